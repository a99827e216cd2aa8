"""Cross-cutting observability: metrics through Airflow's Stats."""
