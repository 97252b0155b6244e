"""The HubSpot CRM API sandbox: v3 objects, search, batch, properties, owners, pipelines
and v4 associations, behind a private-app token and HubSpot's account rate limits.

Search sorts by the first sort only (HubSpot applies one sort rule), ties by record id;
the full-text ``query`` field is refused as unsupported. Only companies and deals exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox.hubspot.account import now_ms
from sandbox.hubspot.base import ASSOC_BATCH_MAX, ASSOC_PAGE_MAX, ASSOC_TYPES, standard_error
from sandbox.hubspot.objects import ObjectEndpoints
from sandbox.hubspot.schema import OBJECT_ALIASES, SINGULAR, STAGES, iso_ms


class HubSpotSandbox(ObjectEndpoints):
    """One HubSpot portal (see :class:`sandbox.hubspot.base.HubSpotBase` for options)."""

    # -- routing -------------------------------------------------------------------------
    def rules(self) -> Iterable[Rule]:
        objects = "/crm/v3/objects/<obj>"
        return [
            Rule(objects, methods=["GET"], endpoint="list_objects"),
            Rule(f"{objects}/search", methods=["POST"], endpoint="search"),
            Rule(f"{objects}/batch/read", methods=["POST"], endpoint="batch_read"),
            Rule(f"{objects}/batch/update", methods=["POST"], endpoint="batch_update"),
            Rule(f"{objects}/<record_id>", methods=["GET"], endpoint="get_object"),
            Rule(f"{objects}/<record_id>", methods=["PATCH"], endpoint="patch_object"),
            Rule("/crm/v3/properties/<obj>", methods=["GET"], endpoint="list_properties"),
            Rule("/crm/v3/properties/<obj>/<name>", methods=["GET"], endpoint="get_property"),
            Rule("/crm/v3/owners", methods=["GET"], endpoint="list_owners"),
            Rule("/crm/v3/pipelines/<obj>", methods=["GET"], endpoint="list_pipelines"),
            Rule("/crm/v4/objects/<obj>/<record_id>/associations/<to>", methods=["GET"],
                 endpoint="associations_page"),
            Rule("/crm/v4/associations/<obj>/<to>/batch/read", methods=["POST"],
                 endpoint="associations_batch_read"),
            Rule("/crm/v4/associations/<obj>/<to>/labels", methods=["GET"],
                 endpoint="association_labels"),
        ]

    # -- metadata --------------------------------------------------------------------------
    def list_properties(self, request: Request, obj: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        store = self._store(obj)
        if store is None:
            return self._invalid(request, f"Unable to infer object type from: {obj}")
        with self.lock:
            data = [p.to_json() for p in store.properties.values()]
        return self._reply(request, {"results": data})

    def get_property(self, request: Request, obj: str, name: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        store = self._store(obj)
        prop = store.properties.get(name) if store else None
        if prop is None:
            return self._fail(request, 404, "OBJECT_NOT_FOUND",
                              f"Unable to find property with name {name}")
        return self._reply(request, prop.to_json())

    def list_owners(self, request: Request) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        limit = min(int(request.args.get("limit", 100)), 500)
        after = int(request.args.get("after", 0) or 0)
        email = request.args.get("email")
        with self.lock:
            owners = [o for o in self.account.owners if not email or o["email"] == email]
        out: dict[str, Any] = {"results": owners[after : after + limit]}
        if after + limit < len(owners):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return self._reply(request, out)

    def list_pipelines(self, request: Request, obj: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        if OBJECT_ALIASES.get(obj) != "deals":
            return self._invalid(request, f"{obj} has no pipelines here")
        stamp = iso_ms(0)
        stages = [{
            "id": sid, "label": label, "displayOrder": i, "archived": False,
            "metadata": {"isClosed": str(closed).lower(), "probability": prob},
            "createdAt": stamp, "updatedAt": stamp,
            "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
        } for i, (sid, label, closed, prob) in enumerate(STAGES)]
        return self._reply(request, {"results": [{
            "id": "default", "label": "Sales Pipeline", "displayOrder": 0, "archived": False,
            "createdAt": stamp, "updatedAt": stamp, "stages": stages,
        }]})

    # -- v4 associations ---------------------------------------------------------------------
    def _assoc_json(self, obj: str, to: str, record_id: int) -> list[dict[str, Any]]:
        primary, plain = ASSOC_TYPES[(obj, to)]
        out = []
        for i, other in enumerate(self._associated(obj, record_id)):
            types = [{"category": "HUBSPOT_DEFINED", "typeId": plain, "label": None}]
            is_primary = i == 0 if obj == "deals" else (
                self.account.deal_companies.get(other, [None])[0] == record_id)
            if is_primary:
                types.insert(0, {"category": "HUBSPOT_DEFINED", "typeId": primary,
                                 "label": "Primary"})
            out.append({"toObjectId": other, "associationTypes": types})
        return out

    def associations_page(self, request: Request, obj: str, record_id: str, to: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        pair = (OBJECT_ALIASES.get(obj, obj), OBJECT_ALIASES.get(to, to))
        if pair not in ASSOC_TYPES or not record_id.isdigit():
            return self._invalid(request, f"Unsupported association {obj}->{to}")
        limit = min(int(request.args.get("limit", ASSOC_PAGE_MAX)), ASSOC_PAGE_MAX)
        after = int(request.args.get("after", 0) or 0)
        with self.lock:
            items = self._assoc_json(pair[0], pair[1], int(record_id))
        out: dict[str, Any] = {"results": items[after : after + limit]}
        if after + limit < len(items):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return self._reply(request, out)

    def associations_batch_read(self, request: Request, obj: str, to: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        pair = (OBJECT_ALIASES.get(obj, obj), OBJECT_ALIASES.get(to, to))
        body = self._body(request)
        if pair not in ASSOC_TYPES or body is None or not isinstance(body.get("inputs"), list):
            return self._invalid(request, "Invalid input JSON: expected inputs")
        if len(body["inputs"]) > ASSOC_BATCH_MAX:
            return self._invalid(
                request, f"Batch input must contain at most {ASSOC_BATCH_MAX} inputs"
            )
        started = iso_ms(now_ms())
        results, errors = [], []
        with self.lock:
            for item in body["inputs"]:
                rid = str(item.get("id", "")) if isinstance(item, dict) else ""
                items = self._assoc_json(pair[0], pair[1], int(rid)) if rid.isdigit() else []
                if items:
                    results.append({"from": {"id": rid}, "to": items[:ASSOC_PAGE_MAX]})
                else:
                    errors.append(standard_error(
                        "OBJECT_NOT_FOUND",
                        f"No {SINGULAR[pair[1]].lower()} is associated with "
                        f"{SINGULAR[pair[0]].lower()} {rid}.",
                        {"fromObjectId": [rid], "toObjectType": [SINGULAR[pair[1]].lower()]},
                        "crm.associations.NO_ASSOCIATIONS_FOUND",
                    ))
        out: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                               "completedAt": iso_ms(now_ms())}
        if errors:
            out["numErrors"] = len(errors)
            out["errors"] = errors
        return self._reply(request, out, 207 if errors else 200)

    def association_labels(self, request: Request, obj: str, to: str) -> Response:
        if (early := self._begin(request)) is not None:
            return early
        pair = (OBJECT_ALIASES.get(obj, obj), OBJECT_ALIASES.get(to, to))
        if pair not in ASSOC_TYPES:
            return self._invalid(request, f"Unsupported association {obj}->{to}")
        primary, plain = ASSOC_TYPES[pair]
        return self._reply(request, {"results": [
            {"category": "HUBSPOT_DEFINED", "typeId": primary, "label": "Primary"},
            {"category": "HUBSPOT_DEFINED", "typeId": plain, "label": None},
        ]})

