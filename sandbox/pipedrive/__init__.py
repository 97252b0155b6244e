"""Pipedrive API v2 sandbox: one instance is one Pipedrive company.

Serves ``/api/v2/deals``, ``/api/v2/organizations`` (list with cursor paging, get, patch,
delete, post), ``/api/v2/dealFields``, ``/api/v2/organizationFields`` and ``/v1/users``
behind the ``x-api-token`` header, with the company's daily token budget (each operation
costs its ``x-token-cost``) and a per-token 2-second burst window, both answering 429 with
the ``x-ratelimit-*`` and ``x-daily-ratelimit-token-*`` headers. Custom field keys (40-char
hashes) and option ids derive from a per-instance ``key_seed``, so they differ between
instances as they do between companies.

Fixture format for ``load_fixture(data)`` (also ``POST /__sandbox/fixture``)::

    {
      "default_fields": true,                 # create the default mapping's custom fields
      "users": [{"name": "Ann", "email": "ann@example.com"}],        # ids 1, 2, ...
      "fields": {"deals": [{"name": "Tier", "type": "enum", "options": ["Gold", "Silver"]}],
                 "organizations": [{"name": "Region", "type": "varchar"}]},
      "organizations": [{"id": 10, "name": "Acme GmbH", "website": "acme.de",
                         "address": {"value": "Germany", "country": "Germany"},
                         "add_time": "2026-01-02T03:04:05Z", "update_time": "...",
                         "Channel owner": "D-001"}],
      "deals": [{"title": "Acme pumps", "org_id": 10, "value": 1200.0, "currency": "EUR",
                 "status": "open", "Registration status": "Active", "is_deleted": false}]
    }

Records take API v2 field names for built-in fields and custom fields by their NAME, with
option fields given as LABELS (a list of labels for ``set``); ``id``, ``add_time`` and
``update_time`` are optional; ``is_deleted: true`` deletes the record after loading.
Organizations load before deals, so deals may name their ``org_id``.

Acting as a CRM user (timestamps bump as Pipedrive's do): in Python ``user_create(entity,
fields)``, ``user_update(entity, id, fields)``, ``user_delete(entity, id)`` (entity is
``"deals"`` or ``"organizations"``; fields by name and label as above), ``rotate_token()``,
``field_key(entity, name)``, ``record_data(entity, id)``; over HTTP under ``/__sandbox/``:
``POST records/<entity>`` and ``PATCH|DELETE records/<entity>/<id>`` with
``{"fields": {...}}``, ``POST rotate_token``, ``GET|POST budget`` (``{"spent": n}``) and
``POST fixture``. Answers carry one ``Date`` header, by the sandbox's clock (which may not be
the wall clock): clients read it to judge which one-second ``update_time`` stamps are final.
"""

from __future__ import annotations

from sandbox.pipedrive.app import PipedriveSandbox

__all__ = ["PipedriveSandbox"]
