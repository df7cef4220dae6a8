DROP TABLE credits.entries_archive;
