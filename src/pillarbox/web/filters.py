"""Mail filters in the account settings: the rule builder, the raw Sieve editor, and the
operations both share with the JSON API.

Implementation notes:

- **One script for the rules.** The builder's rules become the script named
  :data:`~pillarbox.web.sieverules.SCRIPT_NAME` (:mod:`.sieverules` writes and reads it), stored
  and activated through the store; every other script is the user's own (written here in the
  raw editor, or over ManageSieve).
- **Never overwritten silently.** A script the builder did not write exactly — another active
  script, or its own script edited elsewhere — is shown in the raw editor with a notice, and
  the builder takes over only when the user says so (:func:`use_rules`; a hand-edited rules
  script is kept under a new name first). Every change carries the ``version`` (a digest) of
  the script it was made from: if the script changed in between (another window, a ManageSieve
  client), the change is refused rather than applied over it.
- **Checked before stored**, by the rules ManageSieve and ``pillarbox sieve`` follow too
  (:mod:`pillarbox.sievescripts`): names through
  :func:`~pillarbox.store.types.sieve_script_name`, ``[sieve] max_script_size`` and
  ``max_scripts``, compilation (a compile error comes back with its line), the active script
  not deleted. Besides, folders a rule files into must exist, and a rule forwards under the
  forwarding settings' rules (a valid address, never the account) and ``max_redirects``.
- **Saving is one store write.** Replacing the rules script keeps its active flag (store
  contract), so changing rules that are in use is a single atomic put. Only the first save (or
  taking over from another script) needs a second write to activate it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox import sievescripts
from pillarbox.errors import NotFound, UserError
from pillarbox.mail.people import parse_people
from pillarbox.observability.log import Log
from pillarbox.services import Services
from pillarbox.sievescripts import (
    InvalidScript,
    ScriptActive,
    ScriptLimits,
    ScriptQuotaExceeded,
)
from pillarbox.store.types import Account, SieveScript, sieve_script_name
from pillarbox.web.app import (
    field_number,
    field_text,
    posted_form,
    redirect,
    require_account,
    unconfirmed,
    web,
)
from pillarbox.web.mailaccess import MailAccess
from pillarbox.web.sieverules import (
    ACTION_LABELS,
    ADDRESS_ACTIONS,
    FIELD_LABELS,
    FOLDER_ACTIONS,
    MATCH_LABELS,
    SCRIPT_NAME,
    Action,
    ActionKind,
    Condition,
    Field,
    Match,
    Rule,
    RuleError,
    check_rule,
    choice,
    describe,
    rules_of,
    script_of,
)

#: Blank condition and action rows the rule form offers beyond the filled ones.
BLANK_ROWS = 2
#: Rows the rule form shows at most ("More rows" stops adding there).
MAX_FORM_ROWS = 30
#: The prefix of the name a hand-edited rules script is kept under when the builder takes over.
KEPT_PREFIX = SCRIPT_NAME + "-edited"
_log = Log("web.filters")


class Conflict(UserError):
    """The script changed since the page (or API client) read it; nothing was saved."""


def version_of(script: SieveScript | None) -> str:
    """The version a change is based on: a digest of the script's text ("" when absent)."""
    if script is None:
        return ""
    return hashlib.sha256(script.content.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# -- operations (shared with the JSON API) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    """What the filters page shows."""

    scripts: list[SieveScript]
    #: The rules script, if it exists.
    ours: SieveScript | None
    #: Its rules; None when it was edited outside the builder (the builder is unavailable).
    rules: tuple[Rule, ...] | None
    active: SieveScript | None

    @property
    def version(self) -> str:
        return version_of(self.ours)

    @property
    def builder(self) -> bool:
        """Whether the rule builder is in charge: its script is active, or nothing is active
        and its script (if any) is unedited."""
        if self.rules is None:
            return False
        return self.active is None or self.active.name == SCRIPT_NAME

    @property
    def hand_written(self) -> SieveScript | None:
        """The script the builder would displace: the active one, or the edited rules script."""
        if self.builder:
            return None
        if self.active is not None:
            return self.active
        return self.ours


async def load_filters(services: Services, account: Account) -> Filters:
    store = services.store
    scripts = await store.list_sieve_scripts(account.id)
    ours = next((s for s in scripts if s.name == SCRIPT_NAME), None)
    active = next((s for s in scripts if s.active), None)
    rules = rules_of(ours.content) if ours is not None else ()
    return Filters(scripts, ours, rules, active)


def limits(services: Services) -> ScriptLimits:
    return ScriptLimits.of(services.config.sieve)


async def _put(services: Services, account: Account, name: str, content: str) -> str:
    """Store through :func:`pillarbox.sievescripts.put_script` (the rules ManageSieve follows:
    name, size and count quotas, then compilation); a refusal is logged."""
    try:
        return await sievescripts.put_script(
            services.store, account.id, name, content, limits(services)
        )
    except (InvalidScript, ScriptQuotaExceeded) as exc:
        _log.info("sieve script refused", account=account.address, script=name, reason=str(exc))
        raise


def _check_version(current: SieveScript | None, version: str | None) -> None:
    if version is not None and version != version_of(current):
        raise Conflict(
            "the script changed since this was loaded (in another window or a mail program); "
            "nothing was saved — reload to see the current version"
        )


async def check_targets(services: Services, account: Account, rules: Sequence[Rule]) -> None:
    """What only the account and the config can say: folders exist (delivery would not create
    one), nothing forwards to the account, and all the rules together forward to no more
    addresses than ``[sieve] max_redirects`` (more would be a runtime error at delivery, which
    cancels every action of the run)."""
    folders = {m.name for m in await MailAccess(services, account).mailboxes()}
    forwarded: set[str] = set()
    for rule in rules:
        check_rule(rule)
        for action in rule.actions:
            if action.kind in FOLDER_ACTIONS and action.target not in folders:
                raise RuleError(f"rule “{rule.name}”: there is no folder {action.target}")
            if action.kind in ADDRESS_ACTIONS:
                if action.target.lower() == account.address.lower():
                    raise RuleError("an account cannot forward to itself")
                if rule.enabled:
                    forwarded.add(action.target.lower())
    limit = services.config.sieve.max_redirects
    if len(forwarded) > limit:
        raise RuleError(f"the rules forward to {len(forwarded)} addresses; at most {limit}")


async def save_rules(
    services: Services,
    account: Account,
    rules: Sequence[Rule],
    *,
    version: str | None,
    take_over: bool = False,
) -> str:
    """Store ``rules`` as the rules script and make it active; returns its new version.

    Refused when the rules script was edited by hand (see :func:`use_rules`), when another
    script is active (unless ``take_over``: the user chose the builder over it; it stays
    stored), or when the rules changed since ``version`` (None: no check)."""
    await check_targets(services, account, rules)
    content = script_of(rules)
    store = services.store
    current = await store.get_sieve_script(account.id, SCRIPT_NAME)
    _check_version(current, version)
    if current is not None and rules_of(current.content) is None:
        raise Conflict(
            "the filter script was edited outside the rule builder; keep or replace it first"
        )
    active = await store.active_sieve_script(account.id)
    if active is not None and active.name != SCRIPT_NAME and not take_over:
        raise Conflict(
            f"your mail is filtered by the script “{active.name}”; choose the rule builder "
            "over it first"
        )
    await _put(services, account, SCRIPT_NAME, content)
    if current is None or not current.active:
        await store.set_active_sieve_script(account.id, SCRIPT_NAME)
    _log.info("sieve rules stored", account=account.address, rules=len(rules), size=len(content))
    return version_of(SieveScript(SCRIPT_NAME, content, True))


async def save_script(
    services: Services,
    account: Account,
    name: str,
    content: str,
    *,
    version: str | None,
    activate: bool = False,
) -> SieveScript:
    """Store a script written by hand (measured and compiled first); returns it as stored."""
    name = sieve_script_name(name)
    content = content.replace("\r\n", "\n")
    store = services.store
    current = await store.get_sieve_script(account.id, name)
    if version == "" and current is not None:
        raise Conflict(f"a script named “{name}” exists already")
    _check_version(current, version)
    await _put(services, account, name, content)
    if activate:
        await store.set_active_sieve_script(account.id, name)
    _log.info("sieve script stored", account=account.address, script=name, activated=activate)
    stored = await store.get_sieve_script(account.id, name)
    assert stored is not None
    return stored


async def script_named(services: Services, account: Account, name: str) -> SieveScript:
    return await sievescripts.get_script(services.store, account.id, name)


async def activate(services: Services, account: Account, name: str | None) -> None:
    """Make ``name`` the active script (None: filters off)."""
    await sievescripts.activate(services.store, account.id, name)
    _log.info("sieve script activated", account=account.address, script=name or "(none)")


async def delete_script(services: Services, account: Account, name: str) -> None:
    """Delete a script that is not active (RFC 5804 §2.10, as over ManageSieve)."""
    await sievescripts.delete_script(services.store, account.id, name)
    _log.info("sieve script deleted", account=account.address, script=name)


async def use_rules(services: Services, account: Account, *, version: str | None) -> None:
    """Put the rule builder in charge: its script becomes active. A rules script edited by
    hand is first kept under a new name (``pillarbox-edited``, ``-2`` …), never overwritten."""
    store = services.store
    current = await store.get_sieve_script(account.id, SCRIPT_NAME)
    _check_version(current, version)
    if current is not None and rules_of(current.content) is None:
        taken = {s.name for s in await store.list_sieve_scripts(account.id)}
        kept = next(
            n
            for n in (KEPT_PREFIX, *(f"{KEPT_PREFIX}-{i}" for i in range(2, 1000)))
            if n not in taken
        )
        # Room for one more script: the kept one and a new rules script.
        await sievescripts.check_space(store, account.id, kept, 0, limits(services))
        await store.rename_sieve_script(account.id, SCRIPT_NAME, kept)
        _log.info("edited rules script kept", account=account.address, script=kept)
        if current.active:
            await store.set_active_sieve_script(account.id, None)
        current = None
    if current is None:
        await save_rules(services, account, (), version="", take_over=True)
    else:
        await store.set_active_sieve_script(account.id, SCRIPT_NAME)


async def move_rule(
    services: Services, account: Account, index: int, step: int, *, version: str | None
) -> None:
    rules = list(await _current_rules(services, account))
    target = index + step
    if not 0 <= index < len(rules) or not 0 <= target < len(rules):
        raise NotFound("no such rule")
    rules[index], rules[target] = rules[target], rules[index]
    await save_rules(services, account, rules, version=version)


async def _current_rules(services: Services, account: Account) -> tuple[Rule, ...]:
    filters = await load_filters(services, account)
    if filters.rules is None:
        raise Conflict("the filter script was edited outside the rule builder")
    return filters.rules


# -- the rule form ---------------------------------------------------------------------------------


@dataclass
class RuleForm:
    """The rule form's contents as typed, valid or not (re-shown with the error)."""

    name: str = ""
    enabled: bool = True
    any_of: bool = False
    conditions: list[dict[str, str]] = field(default_factory=list)
    actions: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, rule: Rule) -> RuleForm:
        return cls(
            rule.name,
            rule.enabled,
            rule.any_of,
            [
                {
                    "field": c.field.value,
                    "match": c.match.value,
                    "value": c.value,
                    "header": c.header,
                }
                for c in rule.conditions
            ],
            [
                {
                    "kind": a.kind.value,
                    "folder": a.target if a.kind in FOLDER_ACTIONS else "",
                    "address": a.target if a.kind in ADDRESS_ACTIONS else "",
                }
                for a in rule.actions
            ],
        )

    @classmethod
    def posted(cls, form: FormData) -> RuleForm:
        def rows(prefix: str, count_field: str, keys: tuple[str, ...]) -> list[dict[str, str]]:
            count = min(field_number(field_text(form, count_field)) or 0, MAX_FORM_ROWS)
            return [{k: field_text(form, f"{prefix}{i}_{k}") for k in keys} for i in range(count)]

        return cls(
            " ".join(field_text(form, "name").split()),
            form.get("enabled") == "1",
            field_text(form, "match") == "any",
            rows("c", "condition_rows", ("field", "match", "value", "header")),
            rows("a", "action_rows", ("kind", "folder", "address")),
        )

    def padded(self, extra: int = BLANK_ROWS) -> RuleForm:
        """With blank rows to fill in (up to :data:`MAX_FORM_ROWS`)."""
        conditions = self.conditions + [
            {"field": "from", "match": "contains", "value": "", "header": ""}
        ] * max(0, min(extra, MAX_FORM_ROWS - len(self.conditions)))
        actions = self.actions + [{"kind": "", "folder": "", "address": ""}] * max(
            0, min(extra, MAX_FORM_ROWS - len(self.actions))
        )
        return RuleForm(self.name, self.enabled, self.any_of, conditions, actions)

    def rule(self) -> Rule:
        """The rule, or :class:`RuleError`; blank rows are left out."""
        conditions: list[Condition] = []
        for row in self.conditions:
            value = row["value"].strip()
            if not value:
                continue
            looked_at = choice(Field, row["field"], "a condition's field")
            conditions.append(
                Condition(
                    looked_at,
                    choice(Match, row["match"], "a condition's comparison"),
                    value.upper() if looked_at is Field.SIZE else value,
                    row["header"].strip().rstrip(":") if looked_at is Field.HEADER else "",
                )
            )
        actions: list[Action] = []
        for row in self.actions:
            if not row["kind"]:
                continue
            kind = choice(ActionKind, row["kind"], "an action")
            target = ""
            if kind in FOLDER_ACTIONS:
                target = row["folder"]
            elif kind in ADDRESS_ACTIONS:
                target = _one_address(row["address"])
            actions.append(Action(kind, target))
        rule = Rule(
            self.name or "Rule", tuple(conditions), tuple(actions), self.any_of, self.enabled
        )
        check_rule(rule)
        return rule


def _one_address(text: str) -> str:
    """A forwarding address as the forwarding settings read one (normalised)."""
    valid, invalid = parse_people(text)
    if invalid or len(valid) != 1:
        raise RuleError(f"not one valid forwarding address: {text.strip() or '(empty)'}")
    return valid[0].address


# -- pages ---------------------------------------------------------------------------------------


async def _page(
    request: Request,
    account: Account,
    *,
    status_code: int = 200,
    template: str = "filters.html",
    **extra: object,
) -> Response:
    app = web(request)
    filters = await load_filters(app.services, account)
    folders = [m.name for m in await MailAccess(app.services, account).mailboxes()]
    settings = await app.services.store.get_settings(account.id)
    return app.render(
        request,
        template,
        status_code=status_code,
        filters=filters,
        folders=folders,
        described=[describe(r) for r in filters.rules or ()],
        fields=FIELD_LABELS,
        matches=MATCH_LABELS,
        actions=ACTION_LABELS,
        folder_actions=[k.value for k in FOLDER_ACTIONS],
        address_actions=[k.value for k in ADDRESS_ACTIONS],
        sieve_limits=app.services.config.sieve,
        # Delivery runs no script when everything is forwarded without a copy (docs/sieve.md).
        forwarded_away=bool(settings.forward_to) and not settings.forward_keep_copy,
        **extra,
    )


async def filters_page(request: Request) -> Response:
    account = await require_account(request)
    notice = "Saved." if request.query_params.get("saved") else ""
    return await _page(request, account, notice=notice)


async def rule_page(request: Request) -> Response:
    """The form for a new rule, or for rule ``?index=N`` (from 0)."""
    account = await require_account(request)
    app = web(request)
    filters = await load_filters(app.services, account)
    index = field_number(request.query_params.get("index"))
    if filters.rules is None or not filters.builder:
        return redirect("/settings/filters")
    if index is None:
        form = RuleForm(name=f"Rule {len(filters.rules) + 1}")
    elif index < len(filters.rules):
        form = RuleForm.of(filters.rules[index])
    else:
        raise NotFound("no such rule")
    return await _page(
        request, account, template="filter_rule.html", form=form.padded(), index=index
    )


async def save_rule(request: Request) -> Response:
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    posted = RuleForm.posted(form)
    index = field_number(field_text(form, "index"))
    version = field_text(form, "version")
    if field_text(form, "op") == "more":
        return await _page(
            request, account, template="filter_rule.html", form=posted.padded(), index=index
        )
    try:
        rule = posted.rule()
        rules = list(await _current_rules(app.services, account))
        if index is None:
            rules.append(rule)
        elif index < len(rules):
            rules[index] = rule
        else:
            raise NotFound("no such rule")
        await save_rules(app.services, account, rules, version=version)
    except UserError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _page(
            request,
            account,
            status_code=_status(exc),
            template="filter_rule.html",
            form=posted.padded(0),
            index=index,
            error=str(exc),
        )
    return redirect("/settings/filters?saved=1")


async def change_rule(request: Request) -> Response:
    """Move a rule up or down, switch it on or off, or delete it."""
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    index: int = request.path_params["index"]
    version = field_text(form, "version")
    operation = request.path_params["operation"]
    try:
        match operation:
            case "up" | "down":
                step = -1 if operation == "up" else 1
                await move_rule(app.services, account, index, step, version=version)
            case "toggle" | "delete":
                rules = list(await _current_rules(app.services, account))
                if index >= len(rules):
                    raise NotFound("no such rule")
                if operation == "delete":
                    asked = unconfirmed(
                        request,
                        form,
                        what=f"The rule “{rules[index].name}” will be deleted.",
                        button="Delete rule",
                        back="/settings/filters",
                    )
                    if asked is not None:
                        return asked
                    del rules[index]
                else:
                    old = rules[index]
                    rules[index] = replace(old, enabled=not old.enabled)
                await save_rules(app.services, account, rules, version=version)
            case _:
                raise NotFound("no such operation")
    except (Conflict, RuleError) as exc:
        return await _page(request, account, status_code=_status(exc), error=str(exc))
    return redirect("/settings/filters?saved=1")


def _status(exc: UserError) -> int:
    return 409 if isinstance(exc, Conflict) else 400


async def take_over(request: Request) -> Response:
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    try:
        await use_rules(app.services, account, version=field_text(form, "version"))
    except UserError as exc:
        return await _page(request, account, status_code=_status(exc), error=str(exc))
    return redirect("/settings/filters?saved=1")


async def script_page(request: Request) -> Response:
    """The raw editor: ``?name=`` a script of the account, or a new one (``?new=1``)."""
    account = await require_account(request)
    app = web(request)
    filters = await load_filters(app.services, account)
    name = request.query_params.get("name")
    if request.query_params.get("new"):
        return await _editor(request, account, "", "", "")
    script = (
        await script_named(app.services, account, name)
        if name is not None
        else filters.hand_written or filters.active or filters.ours
    )
    if script is None:
        return await _editor(request, account, "", "", "")
    return await _editor(request, account, script.name, script.content, version_of(script))


async def _editor(
    request: Request,
    account: Account,
    name: str,
    content: str,
    version: str,
    *,
    status_code: int = 200,
    error: str = "",
    error_line: int | None = None,
) -> Response:
    return await _page(
        request,
        account,
        status_code=status_code,
        template="filter_script.html",
        script_name=name,
        content=content,
        version=version,
        error=error,
        error_line=error_line,
        generated=rules_of(content) is not None,
    )


async def save_script_form(request: Request) -> Response:
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    name = field_text(form, "name")
    content = field_text(form, "content")
    version = field_text(form, "version")
    try:
        stored = await save_script(
            app.services,
            account,
            name,
            content,
            version=version,
            activate=form.get("activate") == "1",
        )
    except UserError as exc:
        return await _editor(
            request,
            account,
            name,
            content,
            version,
            status_code=_status(exc),
            error=exc.message if isinstance(exc, InvalidScript) else str(exc),
            error_line=exc.line if isinstance(exc, InvalidScript) and exc.line else None,
        )
    return redirect(f"/settings/filters/script?name={_quote(stored.name)}&saved=1")


async def script_action(request: Request) -> Response:
    """Activate a script, switch filtering off, or delete a script."""
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    name = field_text(form, "name")
    try:
        match request.path_params["operation"]:
            case "activate":
                await activate(app.services, account, name or None)
            case "delete":
                # Another account's or no such script: 404; the active one: refused, unasked.
                script = await script_named(app.services, account, name)
                asked = (
                    None
                    if script.active
                    else unconfirmed(
                        request,
                        form,
                        what=f"The filter script “{name}” will be deleted.",
                        button="Delete script",
                        back="/settings/filters#scripts",
                    )
                )
                if asked is not None:
                    return asked
                await delete_script(app.services, account, name)
            case _:
                raise NotFound("no such operation")
    except ScriptActive as exc:
        return await _page(request, account, status_code=400, error=str(exc))
    return redirect("/settings/filters?saved=1#scripts")


def _quote(name: str) -> str:
    return quote(name, safe="")


def routes() -> list[BaseRoute]:
    return [
        Route("/settings/filters", filters_page),
        Route("/settings/filters/rule", rule_page),
        Route("/settings/filters/rule", save_rule, methods=["POST"]),
        Route("/settings/filters/use-rules", take_over, methods=["POST"]),
        Route("/settings/filters/script", script_page),
        Route("/settings/filters/script", save_script_form, methods=["POST"]),
        Route("/settings/filters/scripts/{operation}", script_action, methods=["POST"]),
        Route("/settings/filters/{index:int}/{operation}", change_rule, methods=["POST"]),
    ]
