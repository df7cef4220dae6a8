DROP TABLE ops.jobs;
