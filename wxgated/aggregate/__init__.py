"""Helpers of the `aggregate` terminal: path templates, field selection, the step plan.

The terminal itself is wxgated/terminals/aggregate.py.
"""
