"""HTTP routes. Each handler parses, calls one SQL function, and maps the row."""
