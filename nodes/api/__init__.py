"""The REST API of the node catalog and connections (registered in ``flowplatform/urls.py``)."""
