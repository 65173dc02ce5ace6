"""Results tables and plots built from the metrics JSON files, beside the seeds' published numbers."""
