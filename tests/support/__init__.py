"""Test infrastructure: the real control plane, MinIO and Prometheus the suite runs against."""
