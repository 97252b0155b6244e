"""Vendor connectors: one module per CRM behind the small protocol in :mod:`connectors.base`."""
