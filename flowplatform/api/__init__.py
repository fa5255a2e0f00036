"""Shared pieces of the REST API: errors, parsing, pagination, permissions, schema, auth.

Apps build their endpoints in their own ``api`` package (``flows/api``, ``nodes/api``);
``flowplatform/urls.py`` registers them on one router under ``/api/v1/``.
"""
