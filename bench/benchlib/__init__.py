"""Helpers for the wxgated benchmarks: processes, services, wrk, reports."""
