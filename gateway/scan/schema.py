"""The JSON report's schema (JSON Schema 2020-12), the same shape as model.py. tests/test_scan.py validates
every report it makes against it; docs/scan.md explains the fields. Fields are only ever added."""
from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_BOOL = {"type": "boolean"}
_STRS = {"type": "array", "items": _STR}
_CATEGORY = {"enum": ["necessary", "preferences", "analytics", "marketing", None]}
_SOURCE = {"enum": ["config", "known", "none"]}
_PARTY = {"enum": ["first", "third"]}
_PHASE = {"enum": ["no_consent", "reject", "accept"]}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


SET_BY = _object({"kind": {"enum": ["http_response", "script", "inline_script", "unknown"]}, "url": _NSTR})
_DECLARED = {"category": _CATEGORY, "category_source": _SOURCE, "vendor": _STR, "purpose": _STR}
COOKIE = _object({
    "name": _STR, "domain": _STR, "path": _STR, "party": _PARTY, "expires": _NSTR,
    "lifetime_days": {"type": ["number", "null"]}, "http_only": _BOOL, "secure": _BOOL, "same_site": _STR,
    "set_by": SET_BY, "first_page": _STR, **_DECLARED,
})
STORAGE = _object({
    "area": {"enum": ["localStorage", "sessionStorage"]}, "key": _STR, "origin": _STR, "party": _PARTY,
    "set_by": SET_BY, "first_page": _STR, **_DECLARED,
})
REQUEST = _object({
    "host": _STR, "party": {"const": "third"}, "role": {"enum": ["consent_banner", "other"]}, "types": _STRS,
    "count": {"type": "integer", "minimum": 1}, "example": _STR, "identifier_params": _STRS, "first_page": _STR,
})
PAGE = _object({
    "url": _STR, "status": {"type": ["integer", "null"]}, "error": _NSTR, "banner": _NSTR,
    "new_cookies": _STRS, "new_storage": _STRS, "third_party_hosts": _STRS,
})
PHASE = _object({
    "name": _PHASE, "title": _STR, "status": {"enum": ["done", "skipped", "error"]}, "note": _STR,
    "decision": {"oneOf": [{"type": "null"}, _object({"banner": _STR, "clicked": {"enum": ["accept", "reject"]},
                                                      "page": _STR})]},
    "pages": {"type": "array", "items": PAGE}, "cookies": {"type": "array", "items": COOKIE},
    "storage": {"type": "array", "items": STORAGE}, "requests": {"type": "array", "items": REQUEST},
})
FINDING = _object({
    "id": _STR, "phase": {"enum": ["no_consent", "reject"]}, "kind": {"enum": ["cookie", "storage", "request"]},
    "name": _STR, "where": _STR, "party": _PARTY, "category": _CATEGORY, "category_source": _SOURCE,
    "first_page": _STR, "set_by": {"oneOf": [{"type": "null"}, SET_BY]}, "problem": _STR, "advice": _STR,
})
REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "consentgate scan report",
    **_object({
        "schema_version": {"const": 1}, "tool": {"const": "consentgate scan"}, "tool_version": _STR,
        "url": _STR, "origin": _STR, "site": _NSTR, "config": _NSTR, "started_at": _STR, "finished_at": _STR,
        "browser": _STR, "options": {"type": "object", "additionalProperties": {"type": "integer"}},
        "banner": _NSTR,
        "verdict": _object({"status": {"enum": ["clean", "findings", "error"]}, "exit_code": {"enum": [0, 1, 2]},
                            "findings": {"type": "integer"}, "errors": {"type": "integer"}}),
        "phases": {"type": "array", "items": PHASE},
        "findings": {"type": "array", "items": FINDING},
        "errors": {"type": "array", "items": _object({"phase": _NSTR, "page": _NSTR, "message": _STR})},
    }),
}
