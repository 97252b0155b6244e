"""Typed configuration: YAML -> pydantic -> frozen values, validated once at start.

Exports resolve lazily so that importing ``config.canonical`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.connections import (
        Connection,
        DynamicsAuth,
        DynamicsConnection,
        HubspotAuth,
        HubspotConnection,
        PipedriveAuth,
        PipedriveConnection,
        SalesforceAuth,
        SalesforceConnection,
    )
    from config.errors import (
        ConfigError,
        ConfigProblem,
    )
    from config.loader import (
        DEFAULT_MAPPINGS_DIR,
        load_settings,
    )
    from config.mapping import (
        CompiledMapping,
        EntityMapping,
        FieldSpec,
        MappingValueError,
        WriteSpec,
    )
    from config.models import (
        LoggingSettings,
        MatchingSettings,
        NotificationSettings,
        OutboxSettings,
        Policy,
        RegistrationTerms,
        ScheduleSettings,
        ScorecardSettings,
        Settings,
        StoreSettings,
    )

_EXPORTS: dict[str, str] = {
    "Connection": "config.connections",
    "DynamicsAuth": "config.connections",
    "DynamicsConnection": "config.connections",
    "HubspotAuth": "config.connections",
    "HubspotConnection": "config.connections",
    "PipedriveAuth": "config.connections",
    "PipedriveConnection": "config.connections",
    "SalesforceAuth": "config.connections",
    "SalesforceConnection": "config.connections",
    "ConfigError": "config.errors",
    "ConfigProblem": "config.errors",
    "DEFAULT_MAPPINGS_DIR": "config.loader",
    "load_settings": "config.loader",
    "CompiledMapping": "config.mapping",
    "EntityMapping": "config.mapping",
    "FieldSpec": "config.mapping",
    "MappingValueError": "config.mapping",
    "WriteSpec": "config.mapping",
    "LoggingSettings": "config.models",
    "MatchingSettings": "config.models",
    "NotificationSettings": "config.models",
    "OutboxSettings": "config.models",
    "Policy": "config.models",
    "RegistrationTerms": "config.models",
    "ScheduleSettings": "config.models",
    "ScorecardSettings": "config.models",
    "Settings": "config.models",
    "StoreSettings": "config.models",
}

__all__ = [
    "DEFAULT_MAPPINGS_DIR",
    "CompiledMapping",
    "ConfigError",
    "ConfigProblem",
    "Connection",
    "DynamicsAuth",
    "DynamicsConnection",
    "EntityMapping",
    "FieldSpec",
    "HubspotAuth",
    "HubspotConnection",
    "LoggingSettings",
    "MappingValueError",
    "MatchingSettings",
    "NotificationSettings",
    "OutboxSettings",
    "PipedriveAuth",
    "PipedriveConnection",
    "Policy",
    "RegistrationTerms",
    "SalesforceAuth",
    "SalesforceConnection",
    "ScheduleSettings",
    "ScorecardSettings",
    "Settings",
    "StoreSettings",
    "WriteSpec",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'config' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
