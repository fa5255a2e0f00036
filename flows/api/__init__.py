"""The REST API of flows, versions and runs (registered in ``flowplatform/urls.py``)."""
