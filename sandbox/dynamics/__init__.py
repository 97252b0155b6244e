"""Dataverse (Dynamics 365) sandbox: an Entra-like authority plus the Web API v9.2.

What it serves (HTTPS only, because msal refuses an ``http`` authority):

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and
  ``POST /{tenant}/oauth2/v2.0/token`` (client credentials with ``client_secret`` or a
  ``client_assertion`` JWT signed by the registered certificate; scope
  ``<environment url>/.default``; Entra error bodies with ``error_codes``).
- ``/api/data/v9.2/{accounts|opportunities|systemusers|transactioncurrencies}`` with
  ``$select``, ``$filter`` (eq/ne/gt/ge/lt/le, and/or/not, parentheses, contains/
  startswith/endswith), ``$orderby``, ``$top``, ``Prefer: odata.maxpagesize`` (<= 5000) and
  ``@odata.nextLink`` paging cookies, ``odata.include-annotations`` (FormattedValue,
  lookuplogicalname, associatednavigationproperty), change tracking
  (``odata.track-changes``, ``$deltatoken``, ``$deletedEntity`` rows, error ``0x80044352``
  once a token is older than ``delta_token_retention`` or after ``expire_delta_tokens()``).
- ``GET/PATCH/DELETE /{set}({guid})``: PATCH upserts without ``If-Match``, is update-only
  with ``If-Match: *`` and answers 412 ``0x80060882`` on a stale ``W/"<version>"``;
  lookups via ``<nav>@odata.bind`` (schema-name casing for custom lookups).
- ``POST /api/data/v9.2/$batch`` (<= 1000 operations, change sets all-or-nothing,
  ``Prefer: odata.continue-on-error``); each operation counts against service protection.
- ``EntityDefinitions`` (with ``$select``/``$filter``/``$expand=Attributes``) and attribute
  casts (``.../Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`` etc.).
- ``RetrieveMetadataChanges(Query=@p1)`` (an ``EntityQueryExpression``): tables with their
  columns and the columns' option sets in one call, a ``ServerVersionStamp``, and with
  ``ClientVersionStamp`` only what changed since (``sandbox/dynamics/metadata_query.py``).
- Service protection: ``request_limit`` requests per ``window_seconds`` per app user;
  429 ``0x80072322`` with ``Retry-After``.

Serve it with :func:`serve_dynamics` (HTTPS, and the app learns its own base URL, which
``credentials()`` reports as ``authority``, ``environment_url``, ``scope`` and ``api_url``).
Admin hooks under ``/__sandbox/``: ``records/<set>`` (POST), ``records/<set>/<id>``
(GET/PATCH/DELETE), ``expire-delta-tokens`` (POST).

Fixture format for :meth:`DynamicsApp.load_fixture`: a JSON object keyed by entity set
(``systemusers``, ``transactioncurrencies``, ``accounts``, ``opportunities``, loaded in
that order), each a list of rows using Web API property names: the primary key (e.g.
``accountid``, optional, a GUID), columns by logical name, lookups as
``_<lookup>_value`` GUIDs, choices as integers or labels, datetimes ISO 8601 (date-only
columns ``YYYY-MM-DD``), optional ``modifiedon``/``createdon``. Example::

    {"accounts": [{"accountid": "5f0c...", "name": "Contoso GmbH",
                   "websiteurl": "https://contoso.de", "address1_country": "Germany",
                   "modifiedon": "2026-03-01T10:00:00Z"}],
     "opportunities": [{"name": "Pumps", "_parentaccountid_value": "5f0c...",
                        "estimatedvalue": 12000, "statecode": "Open",
                        "new_registrationstatus": "Active"}]}
"""

from __future__ import annotations

from sandbox.dynamics.app import API, DynamicsApp, serve_dynamics
from sandbox.dynamics.auth import make_certificate
from sandbox.dynamics.seed import record_id

__all__ = ["API", "DynamicsApp", "make_certificate", "record_id", "serve_dynamics"]
