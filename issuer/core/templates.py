"""Metadata templates: one TOML file per package or connector class (docs/templates.md).

A template resolves along its ``extends`` chain (child wins; ``[claims]`` merge claim by claim),
is checked against the RFC 7591 rules of :mod:`issuer.core.metadata`, and gets a digest: the SHA-256
of its canonical resolved content, recorded beside every statement minted from it.
"""

from __future__ import annotations

import difflib
import math
import os
import pwd
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from issuer.core import metadata
from issuer.core.clock import format_duration, parse_duration, rfc3339
from issuer.core.encoding import canonical_json, sha256_hex
from issuer.core.errors import NotFound, TemplateError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
KEYS = ("description", "extends", "lifetime", "overridable", "required", "remove_claims", "cimd",
        "claims")
RULE = "docs/templates.md"


@dataclass(frozen=True)
class Problem:
    """One rejection (or warning) naming file, claim or key, and rule."""

    level: metadata.Level
    file: str
    where: str  # "claim 'scope'", "key 'lifetime'"
    message: str
    rule: str
    code: str = "invalid_template"

    def line(self) -> str:
        return f"{self.file}: {self.where}: {self.message} ({self.rule})"


@dataclass(frozen=True)
class Template:
    """A resolved, validated template."""

    name: str
    path: Path
    chain: tuple[str, ...]  # this template first, then what it extends
    description: str
    lifetime: int  # seconds
    overridable: frozenset[str]  # includes every required claim
    required: frozenset[str]
    claims: dict[str, Any]
    digest: str
    warnings: tuple[Problem, ...] = ()
    #: Also served as a Client ID Metadata Document at ``/clients/<name>`` (docs/cimd.md).
    cimd: bool = False

    def content(self) -> dict[str, Any]:
        """The resolved content that the digest covers (and history diffs compare)."""
        return template_content(self.description, self.lifetime, self.overridable,
                                self.required, self.claims, self.cimd)


def template_content(description: str, lifetime: int, overridable: Iterable[str],
                     required: Iterable[str], claims: dict[str, Any],
                     cimd: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {
        "description": description,
        "lifetime": format_duration(lifetime),
        "overridable": sorted(overridable),
        "required": sorted(required),
        "claims": claims,
    }
    if cimd:  # only when set, so the digests of templates that never host one stay the same
        content["cimd"] = True
    return content


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``; did you mean 'x'?`` when a known name is one or two typos away, else nothing."""
    near = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.75)
    return f"; did you mean '{near[0]}'?" if near else ""


def check_name(name: str) -> str:
    """Template names are file names: ``[a-z0-9][a-z0-9._-]{0,63}``; nothing else is read."""
    if not isinstance(name, str) or not NAME.match(name):
        raise NotFound(f"no template named {name!r} (names match [a-z0-9][a-z0-9._-]{{0,63}})")
    return name


@dataclass
class _Resolution:
    """Accumulates one template's resolution along its chain."""

    leaf: str
    problems: list[Problem] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # key or claim -> file that set it
    claims: dict[str, Any] = field(default_factory=dict)

    def fail(self, file: str, where: str, message: str, rule: str = RULE) -> None:
        self.problems.append(Problem("error", file, where, message, rule))


def _json_problem(value: Any) -> str | None:
    """TOML can express values JSON can't (dates, NaN); a claim must be plain JSON."""
    if isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "is not a finite number"
    if isinstance(value, list):
        return next((p for p in map(_json_problem, value) if p), None)
    if isinstance(value, dict):
        return next((p for p in map(_json_problem, value.values()) if p), None)
    return f"holds a TOML {type(value).__name__}, which is not a JSON value (quote it)"


class TemplateStore:
    """The templates directory: lists, resolves, validates and caches templates."""

    def __init__(self, directory: Path, max_lifetime: int) -> None:
        self.directory = directory
        self.max_lifetime = max_lifetime
        self._cache: dict[str, tuple[tuple[tuple[str, int, int], ...], Template]] = {}

    def path(self, name: str) -> Path:
        return self.directory / f"{check_name(name)}.toml"

    def names(self) -> list[str]:
        """Every template name in the directory, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.toml") if NAME.match(p.stem))

    def load(self, name: str) -> Template:
        """Resolve and validate ``name``; raise NotFound or TemplateError (first problem)."""
        cached = self._cache.get(name)
        if cached and cached[0] == self._stamp(cached[1].chain):
            return cached[1]
        template, problems = self.check(name)
        errors = [p for p in problems if p.level == "error"]
        if template is None or errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise TemplateError(errors[0].line() + more)
        self._cache[name] = (self._stamp(template.chain), template)
        return template

    def editors(self, chain: Iterable[str]) -> list[dict[str, Any]]:
        """Who last edited each file of a chain, as far as the file system knows: its owner
        and modification time (recorded in ``template.changed`` events, docs/audit.md)."""
        found = []
        for link in chain:
            path = self.path(link)
            try:
                st = path.stat()
            except OSError:
                continue
            try:
                owner = pwd.getpwuid(st.st_uid).pw_name
            except KeyError:  # a uid with no account name
                owner = str(st.st_uid)
            found.append({"template": link, "file": str(path), "owner": owner,
                          "mtime": rfc3339(st.st_mtime)})
        return found

    def _stamp(self, chain: Iterable[str]) -> tuple[tuple[str, int, int], ...]:
        stamp = []
        for link in chain:
            try:
                st = os.stat(self.path(link))
            except OSError:
                return ()
            stamp.append((link, st.st_mtime_ns, st.st_size))
        return tuple(stamp)

    def check(self, name: str) -> tuple[Template | None, list[Problem]]:
        """Resolve ``name`` and report every problem (errors and warnings)."""
        check_name(name)
        if not self.path(name).is_file():
            raise NotFound(f"no template named '{name}' (no {self._show(self.path(name))})"
                           + did_you_mean(name, self.names()))
        res = _Resolution(leaf=self._show(self.path(name)))
        self._resolve(name, res, referrer=None)
        if any(p.level == "error" for p in res.problems):
            return None, res.problems
        return self._finish(name, res)

    def _show(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def _read(self, name: str, res: _Resolution, referrer: str | None) -> dict[str, Any] | None:
        path = self.path(name)
        shown = self._show(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            assert referrer is not None
            res.fail(referrer, "key 'extends'", f"template '{name}' not found (no {shown})"
                     + did_you_mean(name, self.names()))
            return None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            res.fail(shown, "file", f"not valid TOML: {exc}", "TOML 1.0")
            return None
        except OSError as exc:
            res.fail(shown, "file", f"cannot read: {exc.strerror}")
            return None
        for key in data:
            if key not in KEYS:
                res.fail(shown, f"key '{key}'", f"unknown key (known: {', '.join(KEYS)}); "
                         "claims go in the [claims] table")
        return data

    def _resolve(self, name: str, res: _Resolution, referrer: str | None) -> None:
        if name in res.chain:
            cycle = " -> ".join([*res.chain, name])
            res.fail(referrer or res.leaf, "key 'extends'", f"extends cycle: {cycle}")
            return
        data = self._read(name, res, referrer)
        if data is None:
            return
        shown = self._show(self.path(name))
        res.chain.append(name)
        res.files.append(self.path(name))
        parent = data.get("extends")
        if parent is not None:
            if not isinstance(parent, str) or not NAME.match(parent):
                res.fail(shown, "key 'extends'", f"{parent!r} is not a template name")
            else:
                self._resolve(parent, res, referrer=shown)
        # Parents were applied first; this file's values now win (docs/templates.md).
        for key in ("description", "lifetime", "overridable", "required", "cimd"):
            if key in data:
                res.values[key] = data[key]
                res.origin[key] = shown
        claims = data.get("claims", {})
        if not isinstance(claims, dict):
            res.fail(shown, "key 'claims'", "must be a table ([claims])")
            return
        self._remove_claims(data.get("remove_claims", []), claims, res, shown)
        for claim, value in claims.items():
            problem = _json_problem(value)
            if problem:
                res.fail(shown, f"claim '{claim}'", problem)
            res.claims[claim] = value
            res.origin["claims." + claim] = shown

    @staticmethod
    def _remove_claims(names: Any, own: dict[str, Any], res: _Resolution, shown: str) -> None:
        """``remove_claims = ["jwks_uri"]``: drop claims inherited from the templates this one
        extends (TOML has no null), e.g. to switch from ``jwks_uri`` to ``jwks``."""
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            res.fail(shown, "key 'remove_claims'", "must be an array of claim names")
            return
        for claim in names:
            if claim in own:
                res.fail(shown, f"claim '{claim}'", "is both in remove_claims and in [claims]; "
                         "setting it in [claims] already replaces the inherited value")
            elif claim not in res.claims:
                res.fail(shown, "key 'remove_claims'", f"claim '{claim}' is not inherited from "
                         "an extended template: nothing to remove" + did_you_mean(claim,
                                                                                  res.claims))
            else:
                del res.claims[claim]
                res.origin.pop("claims." + claim, None)

    def _finish(self, name: str, res: _Resolution) -> tuple[Template | None, list[Problem]]:
        where = res.origin.get
        description = res.values.get("description", "")
        if not isinstance(description, str):
            res.fail(where("description", res.leaf), "key 'description'", "must be a string")
        lifetime = self._lifetime(res)
        overridable = self._claim_list(res, "overridable")
        required = self._claim_list(res, "required")
        overridable |= required  # required implies overridable (docs/templates.md)
        cimd = self._cimd(res, required)
        for finding in metadata.check_claims(res.claims, pending=required):
            file = where("claims." + finding.claim, res.leaf)
            res.problems.append(Problem(finding.level, file, f"claim '{finding.claim}'",
                                        finding.message, finding.rule, finding.code))
        if any(p.level == "error" for p in res.problems) or lifetime is None:
            return None, res.problems
        content = template_content(description, lifetime, overridable, required, res.claims,
                                   cimd)
        template = Template(
            name=name,
            path=self.path(name),
            chain=tuple(res.chain),
            description=description,
            lifetime=lifetime,
            overridable=frozenset(overridable),
            required=frozenset(required),
            claims=dict(res.claims),
            digest=sha256_hex(canonical_json(content)),
            warnings=tuple(p for p in res.problems if p.level == "warning"),
            cimd=cimd,
        )
        return template, res.problems

    def _cimd(self, res: _Resolution, required: set[str]) -> bool:
        """``cimd = true``: the claims must also make a Client ID Metadata Document, so no
        method built on a shared secret (draft-ietf-oauth-client-id-metadata-document s4.1),
        and nothing required at mint time: the hosted document is minted with no caller."""
        value = res.values.get("cimd", False)
        file = res.origin.get("cimd", res.leaf)
        if not isinstance(value, bool):
            res.fail(file, "key 'cimd'", "must be true or false")
            return False
        method = res.claims.get("token_endpoint_auth_method")
        if value and method in metadata.SHARED_SECRET_METHODS:
            res.fail(res.origin.get("claims.token_endpoint_auth_method", res.leaf),
                     "claim 'token_endpoint_auth_method'",
                     f"{method} relies on a shared secret, which a Client ID Metadata Document "
                     "can't carry (cimd = true); use private_key_jwt or none",
                     f"{metadata.CIMD} section 4.1")
        if value and required:
            res.fail(file, "key 'cimd'", f"a hosted document is minted without mint-time "
                     f"values, but required = {sorted(required)}")
        return bool(value)

    def _lifetime(self, res: _Resolution) -> int | None:
        if "lifetime" not in res.values:
            res.fail(res.leaf, "key 'lifetime'", "is required (set it here or in a template this "
                     "one extends); exp = iat + lifetime")
            return None
        file = res.origin["lifetime"]
        try:
            lifetime = parse_duration(res.values["lifetime"])
        except ValueError as exc:
            res.fail(file, "key 'lifetime'", str(exc))
            return None
        if lifetime > self.max_lifetime:
            res.fail(file, "key 'lifetime'", f"{format_duration(lifetime)} exceeds max_lifetime "
                     f"{format_duration(self.max_lifetime)} of issuer.toml")
            return None
        return lifetime

    def _claim_list(self, res: _Resolution, key: str) -> set[str]:
        value = res.values.get(key, [])
        file = res.origin.get(key, res.leaf)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            res.fail(file, f"key '{key}'", "must be an array of claim names")
            return set()
        for claim in value:
            if claim in metadata.RESERVED_CLAIMS:
                res.fail(file, f"key '{key}'", f"'{claim}' is a reserved claim and can never be "
                         "given at mint time", "RFC 7519 section 4.1, RFC 7591 section 3.2.1")
        return set(value)
