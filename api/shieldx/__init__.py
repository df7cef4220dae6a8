"""ShieldX Credits & Shadow: a thin API and operator CLI over PostgreSQL functions."""
