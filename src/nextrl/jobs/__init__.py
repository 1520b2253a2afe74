"""Job plumbing: atomic artifacts, the MLflow tracking queue and GPU device leases."""
