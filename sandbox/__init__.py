"""Local emulators of the Salesforce, HubSpot, Pipedrive and Dataverse APIs.

Each vendor package holds a WSGI app built on :mod:`sandbox.core` (fault injection, a
request log, admin endpoints), served by :mod:`sandbox.serving` and seeded from
:mod:`sandbox.world` records or a native fixture file.
"""
