-- The next migrate of an older release re-applies every function file.
DROP TABLE ops.function_files;
