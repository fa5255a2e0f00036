"""Node SDK and catalog."""
