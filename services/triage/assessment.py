"""Risk assessment of a case: level, score and the reasons for them, from the note and the checklist.

Pure domain code: standard library and PyYAML only, no framework, no I/O beyond reading the lexicon
directory once. The service and `sanad triage score` both call `assess`, so a supervisor replaying past
cases against new lexicons sees exactly what the service would decide.

How a note is read:
1. The note is tokenised and normalised (see normalise.py); every token keeps its span in the original text.
2. Idioms ("اموت من الضحك", "the phone died", "political suicide") are matched first and their tokens are
   masked, so the risk words inside them match nothing.
3. Each concept lexicon (suicidal intent, plan, means, threats to kill, minors, publication, ...) is matched
   on the masked note: Arabic and English entries on the match keys, Arabizi entries on the skeletons.
4. Each mention is read in its context (context.yaml). Negation never drops a suicide-related mention:
   "ما افكر انتحر" is still a caller talking of suicide, reported as suicidal thoughts (at least high). A
   negation counts only right before the mention or across auxiliaries ("ما راح انتحر"), not two words off
   ("ماكو حل راح انتحر" - no way out, I will kill myself), nor inside a condition ("اذا ما تدفعين"). A mention
   in a news item, about someone else in the past (markers near it, in its clause), or in a resolved blackmail
   is reported as such, at level low; someone else's context never covers the caller's own first-person
   words ("راح انتحر", "myself"). A past attempt is an earlier attempt (high), not an attempt now. A present
   or future word at the mention ("will", "tonight", "راح", "الليلة") keeps it present, whatever past or
   news word stands nearby, and a past word does not reach across a reporting verb ("وكالت", "says").
5. Checklist facts add their own reasons. The checklist can raise the level; being empty or false it never
   lowers what the text found.
6. The level is the highest level of any reason, raised to critical when suicidal thoughts or hopelessness
   meet an acute stressor (deadline within 24 hours, material published, threat of violence, victim under
   18).
"""
import functools
import hashlib
import math
import re
import threading
from bisect import bisect_left
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from services.triage.normalise import Note, arabizi_skeleton, normalise_arabic, normalise_latin, tokenise

LEVELS = ("low", "medium", "high", "critical")
LEVEL_FLOOR = {"low": 0, "medium": 25, "high": 50, "critical": 75}
LEVEL_CEILING = {"low": 24, "medium": 49, "high": 74, "critical": 100}

DEFAULT_LEXICON_DIRECTORY = Path(__file__).parent / "lexicons"

SUICIDAL_THOUGHTS = "suicidal_thoughts"
HOPELESSNESS = "hopelessness"
IDEATION_WITH_STRESSOR = "ideation_with_stressor"
# Ideation plus a precipitant is the pattern that ends in attempts: the rule for critical.
# Hopelessness ("my life is over", "no way out") counts as ideation here, as hopelessness.yaml says:
# entrapment is what sextortion victims who died by suicide described.
IDEATION_CODES = frozenset({SUICIDAL_THOUGHTS, HOPELESSNESS})
ACUTE_STRESSOR_CODES = frozenset({"deadline_24h", "published", "violence_threat", "minor"})

SOURCE_TEXT = "text"
SOURCE_CHECKLIST = "checklist"


@dataclass(frozen=True)
class CaseFacts:
    narrative: str = ""
    victim_age: int | None = None
    material_published: bool | None = None
    deadline_hours: float | None = None
    suicidal_thoughts: bool | None = None
    threat_of_violence: bool | None = None


@dataclass(frozen=True)
class Reason:
    code: str
    evidence: tuple[str, ...]
    source: str

    def to_dict(self) -> dict:
        return {"code": self.code, "evidence": list(self.evidence), "source": self.source}


@dataclass(frozen=True)
class Assessment:
    level: str
    score: int
    reasons: tuple[Reason, ...]
    lexicon_version: str

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "score": self.score,
            "reasons": [reason.to_dict() for reason in self.reasons],
            "lexicon_version": self.lexicon_version,
        }


class LexiconError(ValueError):
    """A lexicon file is missing, malformed or refers to something that does not exist."""


class InvalidCaseFacts(ValueError):
    """A field of an incoming case cannot be read; `field` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def case_facts_from_mapping(data: Mapping[str, Any]) -> CaseFacts:
    """Read case facts from JSON-like data; absent or null fields are unknown. Raises InvalidCaseFacts."""
    narrative = data.get("narrative")
    if narrative is not None and not isinstance(narrative, str):
        raise InvalidCaseFacts("narrative", "must be a string or null")
    age = data.get("victim_age")
    if age is not None:
        if isinstance(age, bool) or not isinstance(age, (int, float)) or age != int(age):
            raise InvalidCaseFacts("victim_age", "must be a whole number or null")
        if not 0 <= age <= 120:
            raise InvalidCaseFacts("victim_age", "must be between 0 and 120")
        age = int(age)
    deadline = data.get("deadline_hours")
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not math.isfinite(deadline):
            raise InvalidCaseFacts("deadline_hours", "must be a number or null")
        if deadline < 0:
            raise InvalidCaseFacts("deadline_hours", "must not be negative")
    flags = {}
    for name in ("material_published", "suicidal_thoughts", "threat_of_violence"):
        value = data.get(name)
        if value is not None and not isinstance(value, bool):
            raise InvalidCaseFacts(name, "must be true, false or null")
        flags[name] = value
    return CaseFacts(narrative=narrative or "", victim_age=age, deadline_hours=deadline, **flags)


# ---------------------------------------------------------------------------------------------------------
# Lexicon compilation

_GAP = r"(?: [^ |]+){0,3}?"
_ARABIC_PROCLITICS = "(?:[وف]?(?:ال|بال|كال|لل|[بلك])?)"
_CONJUNCTION = "[وف]?"
_ANY = "[^ ]*"
_HAS_ARABIC = re.compile("[\u0600-\u06FF\u0750-\u077F\u08A0-\u08FF\uFB50-\uFDFF\uFE70-\uFEFC]")
_NUMBER = "{n}"

TEXT_STREAM = "keys"
ARABIZI_STREAM = "skeletons"
_SECTIONS = {"arabic": TEXT_STREAM, "english": TEXT_STREAM, "arabizi": ARABIZI_STREAM}


@dataclass(frozen=True)
class Policy:
    """What a mention becomes in context. A code reports the mention under that code; "drop" ignores it."""
    when_negated: str | None = None
    when_past: str | None = None
    when_conditional: str | None = None
    discounted_by: frozenset[str] = frozenset()
    negation_inside: bool = False   # a negation inside the mention, before its last word, negates it too


@dataclass(frozen=True)
class Matcher:
    """One compiled pattern over one stream, and the words it can start with."""
    stream: str
    regex: re.Pattern
    first_words: frozenset[tuple[str, str]]   # (exact|prefix|suffix|contains|number|digits|any, key)
    id: int = -1


@dataclass(frozen=True)
class Group:
    code: str
    name: str
    policy: Policy
    matchers: tuple[Matcher, ...]
    near: frozenset[str] = frozenset()
    within: int = 12
    maximum: float | None = None
    minimum: float | None = None


@dataclass(frozen=True)
class CodeInfo:
    level: str
    weight: int


@dataclass
class _Compiler:
    sets: dict[str, list[str]]
    numbers: dict[str, int]
    number_regex: dict[str, str] = field(default_factory=dict)

    def literal(self, text: str, stream: str) -> str:
        if _HAS_ARABIC.search(text):
            return re.escape(normalise_arabic(text))
        if stream == ARABIZI_STREAM:
            return re.escape(arabizi_skeleton(text))
        return re.escape(normalise_latin(text))

    def numbers_alternation(self, stream: str) -> str:
        if stream not in self.number_regex:
            words = {self._normalise_phrase(word, stream) for word in self.numbers}
            alternatives = sorted(words, key=len, reverse=True)
            self.number_regex[stream] = "(" + "|".join([r"\d{1,3}", *map(re.escape, alternatives)]) + ")"
        return self.number_regex[stream]

    def _normalise_phrase(self, phrase: str, stream: str) -> str:
        return " ".join(re.sub(r"\\(.)", r"\1", self.literal(word, stream)) for word in phrase.split())

    def word(self, spec: str, stream: str) -> str:
        """Regex for one token (without its leading space)."""
        if spec == _NUMBER:
            return self.numbers_alternation(stream)
        if _NUMBER in spec:
            head, tail = spec.split(_NUMBER, 1)
            return self.word(head, stream) + r"(\d{1,3})" + self.word(tail, stream) if (head or tail) else ""
        if not spec:
            return ""
        exact = spec.startswith("=")
        clitics = spec.startswith("+")
        spec = spec.lstrip("=+")
        leading = spec.startswith("*")
        trailing = spec.endswith("*") and len(spec) > 1
        core = spec.strip("*")
        regex = self.literal(core, stream) if core else ""
        arabic = bool(_HAS_ARABIC.search(core))
        if leading:
            regex = _ANY + regex
        elif arabic and clitics:
            regex = _ARABIC_PROCLITICS + regex
        elif arabic and not exact:
            regex = _CONJUNCTION + regex
        if trailing:
            regex += _ANY
        return regex

    def token(self, spec: str, stream: str) -> str:
        """Regex for one pattern element, including the space before it."""
        if spec == "...":
            return _GAP
        if spec.startswith("!"):
            return f"(?!{self.token(spec[1:], stream)}(?= ))"
        if spec.startswith("(") and spec.endswith(")"):
            return f"(?:{self.token(spec[1:-1], stream)})?"
        alternatives = [self._alternative(alternative, stream) for alternative in _split_outside_brackets(spec, "/")]
        return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"

    def _alternative(self, spec: str, stream: str) -> str:
        if spec.startswith("[") and spec.endswith("]"):
            phrases = _split_outside_brackets(spec[1:-1], "|")
            return "(?:" + "|".join(self.sequence(phrase, stream) for phrase in phrases) + ")"
        if spec.startswith("@"):
            name = spec[1:]
            if name not in self.sets:
                raise LexiconError(f"unknown set @{name}")
            return "(?:" + "|".join(self.sequence(entry, stream) for entry in self.sets[name]) + ")"
        return " " + self.word(spec, stream)

    def _check_distinctive(self, pattern: str) -> None:
        """A one-word Arabizi pattern must not be an English word in disguise: its skeleton needs four
        letters, or a digit letter (3, 7, 5...) in the word ("wasiya" and "was" share the skeleton "ws")."""
        elements = _elements(pattern)
        if len(elements) != 1 or elements[0].startswith("@"):
            return
        if elements[0].startswith("["):
            for phrase in _split_outside_brackets(elements[0][1:-1], "|"):
                self._check_distinctive(phrase)
            return
        for alternative in elements[0].split("/"):
            if _NUMBER in alternative:
                continue
            core = alternative.strip("=+*")
            skeleton = arabizi_skeleton(core)
            distinctive = len(skeleton) >= 4 or (any(c.isdigit() for c in core) and len(skeleton) >= 3)
            if "*" in alternative:
                distinctive = len(skeleton) >= 3
            if not distinctive:
                raise LexiconError(f"Arabizi word {alternative!r} (skeleton {skeleton!r}) is too short to stand alone")

    def sequence(self, pattern: str, stream: str) -> str:
        parts = _elements(pattern)
        if not parts:
            raise LexiconError("empty pattern")
        return "".join(self.token(part, stream) for part in parts)

    def matchers(self, patterns: Iterable[str], stream: str, check_arabizi: bool = True) -> list[Matcher]:
        """One matcher per pattern: with the first-word index, each is tried only where it can start."""
        matchers = []
        for pattern in map(str, patterns):
            if stream == ARABIZI_STREAM and check_arabizi:
                self._check_distinctive(pattern)
            try:
                regex = re.compile(self.sequence(pattern, stream) + "(?= )")
            except re.error as error:
                raise LexiconError(f"pattern {pattern!r} does not compile: {error}") from error
            matchers.append(Matcher(stream, regex, frozenset(self._first_words(_elements(pattern), stream))))
        return matchers

    def _first_words(self, elements: list[str], stream: str) -> set[tuple[str, str]]:
        """The words a pattern can start with, as index keys (see _FirstWordIndex)."""
        if not elements:
            return {("any", "")}
        head, rest = elements[0], elements[1:]
        if head == "..." or head.startswith("!"):
            return self._first_words(rest, stream)
        if head.startswith("(") and head.endswith(")"):
            return self._first_words([head[1:-1], *rest], stream) | self._first_words(rest, stream)
        words = set()
        for alternative in _split_outside_brackets(head, "/"):
            if alternative.startswith("[") and alternative.endswith("]"):
                for phrase in _split_outside_brackets(alternative[1:-1], "|"):
                    words |= self._first_words([*_elements(phrase), *rest], stream)
            elif alternative.startswith("@"):
                for entry in self.sets.get(alternative[1:], ()):
                    words |= self._first_words([*_elements(entry), *rest], stream)
            else:
                words.add(self._first_word(alternative, stream))
        return words

    def _first_word(self, spec: str, stream: str) -> tuple[str, str]:
        if spec == _NUMBER:
            return ("number", "")
        if _NUMBER in spec:
            head = spec.split(_NUMBER, 1)[0].strip("=+*")
            return ("digits", "") if not head else ("prefix", self._key(head, stream))
        spec = spec.lstrip("=+")
        leading, trailing = spec.startswith("*"), spec.endswith("*") and len(spec) > 1
        core = spec.strip("*")
        if not core:
            return ("any", "")
        kind = "contains" if leading and trailing else "suffix" if leading else "prefix" if trailing else "exact"
        return (kind, self._key(core, stream))

    def _key(self, text: str, stream: str) -> str:
        if _HAS_ARABIC.search(text):
            return normalise_arabic(text)
        return arabizi_skeleton(text) if stream == ARABIZI_STREAM else normalise_latin(text)


def _split_outside_brackets(text: str, separator: str) -> list[str]:
    parts, current, depth = [], [], 0
    for character in text:
        depth += (character == "[") - (character == "]")
        if character == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(character)
    parts.append("".join(current))
    return parts


def _elements(pattern: str) -> list[str]:
    """Split a pattern on spaces, keeping a bracketed phrase group "[a b|c]" as one element."""
    elements, current, depth = [], [], 0
    for character in pattern:
        if character == "[":
            depth += 1
        elif character == "]":
            depth -= 1
        if character.isspace() and depth == 0:
            if current:
                elements.append("".join(current))
                current = []
        else:
            current.append(character)
    if depth != 0:
        raise LexiconError(f"unbalanced brackets in {pattern!r}")
    if current:
        elements.append("".join(current))
    return elements


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice: silently keeping the last one hides a reviewer's entry."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicates = {key for key in keys if keys.count(key) > 1}
        if duplicates:
            raise LexiconError(f"line {node.start_mark.line + 1}: key given twice: {sorted(map(str, duplicates))}")
        return super().construct_mapping(node, deep)


def _reach(value: Any) -> tuple[int, int]:
    """A context window: one number for both sides of the mention, or [before, after]."""
    before, after = (value, value) if isinstance(value, int) else value
    return int(before), int(after)


def _keys(words: Iterable[str]) -> frozenset[str]:
    return frozenset(normalise_arabic(w) if _HAS_ARABIC.search(w) else normalise_latin(w) for w in map(str, words))


def _read_yaml(path: Path) -> tuple[dict, bytes]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise LexiconError(f"cannot read {path}: {error}") from error
    try:
        data = yaml.load(raw, Loader=_StrictLoader)
    except (yaml.YAMLError, LexiconError) as error:
        raise LexiconError(f"{path.name}: {error}") from error
    if not isinstance(data, dict):
        raise LexiconError(f"{path.name}: expected a mapping at the top level")
    return data, raw


def _compile_sections(
    compiler: _Compiler, entry: Mapping, where: str, check_arabizi: bool = True
) -> tuple[Matcher, ...]:
    """Compile the arabic/english/arabizi sections of a group. Short one-word Arabizi entries are refused
    unless the group only counts near another mention (check_arabizi=False)."""
    by_stream: dict[str, list[str]] = {}
    for section, stream in _SECTIONS.items():
        patterns = entry.get(section) or []
        if not isinstance(patterns, list):
            raise LexiconError(f"{where}: {section} must be a list")
        by_stream.setdefault(stream, []).extend(patterns)
    try:
        return tuple(
            matcher for stream, patterns in by_stream.items()
            for matcher in compiler.matchers(patterns, stream, check_arabizi)
        )
    except LexiconError as error:
        raise LexiconError(f"{where}: {error}") from error


def _policy(entry: Mapping, defaults: Policy) -> Policy:
    discounted = entry.get("discounted_by")
    return Policy(
        when_negated=entry.get("when_negated", defaults.when_negated),
        when_past=entry.get("when_past", defaults.when_past),
        when_conditional=entry.get("when_conditional", defaults.when_conditional),
        discounted_by=frozenset(discounted) if discounted is not None else defaults.discounted_by,
        negation_inside=bool(entry.get("negation_inside", defaults.negation_inside)),
    )


@dataclass(frozen=True)
class Lexicon:
    version: str
    codes: dict[str, CodeInfo]
    idioms: tuple[Matcher, ...]
    context: dict[str, tuple[Matcher, ...]]
    clause_breaks: frozenset[str]
    negation_window: int
    negation_bridges: frozenset[str]
    context_windows: dict[str, tuple[int, int]]   # kind -> words before and after the mention it reaches
    english_words: frozenset[str]
    discount_codes: dict[str, str]
    groups: tuple[Group, ...]
    numbers: dict[str, int]
    index: "_FirstWordIndex"
    matchers: tuple[Matcher, ...]                 # all of them, by id
    owners: tuple[tuple[str, Any], ...]           # by matcher id: ("idiom", None), ("context", kind), ("group", group)
    idiom_ids: frozenset[int]

    @classmethod
    def load(cls, directory: Path) -> "Lexicon":
        directory = Path(directory)
        index, index_raw = _read_yaml(directory / "index.yaml")
        digest = hashlib.sha256(b"index.yaml\0" + index_raw)
        base_version = str(index.get("version") or "")
        if not base_version:
            raise LexiconError("index.yaml: version is required")

        def load_listed(name: str) -> dict:
            data, raw = _read_yaml(directory / name)
            digest.update(b"\0" + name.encode() + b"\0" + raw)
            return data

        shared = load_listed(index.get("sets", "sets.yaml"))
        numbers = {str(k): int(v) for k, v in (shared.get("numbers") or {}).items()}
        compiler = _Compiler(sets={k: list(v) for k, v in (shared.get("sets") or {}).items()}, numbers=numbers)

        context_data = load_listed(index.get("context", "context.yaml"))
        context = {
            kind: _compile_sections(compiler, entry, f"context.{kind}")
            for kind, entry in (context_data.get("kinds") or {}).items()
        }
        breaks = context_data.get("clause_breaks") or []
        clause_breaks = _keys(breaks)
        discount_codes = dict(context_data.get("discount_codes") or {})

        idiom_data = load_listed(index.get("idioms", "idioms.yaml"))
        idioms = _compile_sections(compiler, idiom_data, "idioms")

        codes = {
            code: CodeInfo(level=info["level"], weight=int(info.get("weight", 1)))
            for code, info in (index.get("derived_codes") or {}).items()
        }
        groups = []
        for name in index.get("concepts") or []:
            data = load_listed(name)
            code = data.get("concept")
            if not code or data.get("level") not in LEVELS:
                raise LexiconError(f"{name}: concept and a level in {LEVELS} are required")
            codes[code] = CodeInfo(level=data["level"], weight=int(data.get("weight", 1)))
            defaults = _policy(data.get("defaults") or {}, Policy())
            for number, entry in enumerate(data.get("groups") or []):
                where = f"{name} group {number}"
                maximum, minimum = entry.get("max"), entry.get("min")
                groups.append(Group(
                    code=code,
                    name=str(entry.get("name", number)),
                    policy=_policy(entry, defaults),
                    matchers=_compile_sections(compiler, entry, where, check_arabizi=not entry.get("near")),
                    near=frozenset(entry.get("near") or ()),
                    within=int(entry.get("within", 12)),
                    maximum=float(maximum) if maximum is not None else None,
                    minimum=float(minimum) if minimum is not None else None,
                ))
        numbered = _Numbering()
        idioms = numbered.all(idioms, ("idiom", None))
        context = {kind: numbered.all(matchers, ("context", kind)) for kind, matchers in context.items()}
        groups = [numbered.group(group) for group in groups]
        number_words = {compiler._normalise_phrase(k, TEXT_STREAM): v for k, v in numbers.items()} | {
            compiler._normalise_phrase(k, ARABIZI_STREAM): v for k, v in numbers.items()}
        lexicon = cls(
            version=f"{base_version}+{digest.hexdigest()[:12]}",
            codes=codes,
            idioms=idioms,
            context=context,
            clause_breaks=clause_breaks,
            negation_window=int(context_data.get("negation_window", 4)),
            negation_bridges=_keys(context_data.get("negation_bridges") or []),
            context_windows={str(k): _reach(v) for k, v in (context_data.get("context_windows") or {}).items()},
            english_words=frozenset(normalise_latin(str(w)) for w in context_data.get("english_words") or []),
            discount_codes=discount_codes,
            groups=tuple(groups),
            numbers=number_words,
            index=_FirstWordIndex(numbered.matchers, number_words),
            matchers=tuple(numbered.matchers),
            owners=tuple(numbered.owners),
            idiom_ids=frozenset(m.id for m in idioms),
        )
        lexicon._check_references()
        return lexicon

    def _check_references(self) -> None:
        for code in self.discount_codes.values():
            if not isinstance(code, str) or code not in self.codes:
                raise LexiconError(f"context.yaml: discount code {code!r} has no level")
        for group in self.groups:
            for target in (group.policy.when_negated, group.policy.when_past, group.policy.when_conditional):
                if target not in (None, "drop") and target not in self.codes:
                    raise LexiconError(f"{group.code}: unknown code {target!r}")
            for kind in group.policy.discounted_by:
                if kind not in self.discount_codes or kind not in {*self.context, "third_party_past"}:
                    raise LexiconError(f"{group.code}: context {kind!r} needs markers in kinds and a discount code")
            for code in group.near:
                if code not in self.codes:
                    raise LexiconError(f"{group.code}: near refers to unknown code {code!r}")
        for code in (*IDEATION_CODES, IDEATION_WITH_STRESSOR, *ACUTE_STRESSOR_CODES):
            if code not in self.codes:
                raise LexiconError(f"the lexicon defines no level for {code!r}")


class _Numbering:
    """Gives every matcher of a lexicon its own id, and remembers what each belongs to."""

    def __init__(self):
        self.matchers: list[Matcher] = []
        self.owners: list[tuple[str, Any]] = []

    def all(self, matchers: Iterable[Matcher], owner: tuple[str, Any]) -> tuple[Matcher, ...]:
        numbered = []
        for matcher in matchers:
            numbered.append(replace(matcher, id=len(self.matchers)))
            self.matchers.append(numbered[-1])
            self.owners.append(owner)
        return tuple(numbered)

    def group(self, group: Group) -> Group:
        first = len(self.matchers)
        numbered = replace(group, matchers=self.all(group.matchers, ("group", None)))
        for id_ in range(first, len(self.matchers)):
            self.owners[id_] = ("group", numbered)
        return numbered


# Context kinds read word by word (negation, conditions, the caller's own words), not as a mention's context.
_LOCAL_KINDS = ("negation", "conditional", "first_person", "bridge", "present", "reporting")
# Kinds a present or future word at the mention ("will", "tonight", "راح", "الليلة") rules out: "she tried last
# year and says she will kill herself tonight" is intent now, and a news item does not say "tonight".
_NOT_PRESENT = frozenset({"past", "news"})
# How far from the mention a present or future word still makes it present: the word before it or after it
# ("انتحر الليلة", "kill herself tonight").
_PRESENT_REACH = (1, 1)
# Kinds that make a mention someone else's topic; they never cover the caller's own first-person words.
_SOMEONE_ELSE = frozenset({"third_party", "third_party_past", "professional", "info_request", "news"})


# Proclitics an Arabic word may carry in a note, stripped when looking a word up in the first-word index.
_PROCLITICS = ("و", "ف", "ال", "بال", "كال", "لل", "ب", "ل", "ك", "وال", "وبال", "وكال", "ولل", "وب", "ول", "وك",
               "فال", "فبال", "فلل", "فب", "فل", "فك")


class _FirstWordIndex:
    """Which matchers can start at a word. Trying every alternation at every word costs milliseconds a note;
    a matcher is tried only where one of its patterns' first words (exact, prefix, suffix or infix, as the
    wildcards say) can stand. The index may offer a matcher that then does not match, never the reverse."""

    def __init__(self, matchers: Iterable[Matcher], number_words: Mapping[str, int]):
        self.by_kind: dict[tuple[str, str], dict[str, set[int]]] = {}
        for matcher in matchers:
            for kind, key in matcher.first_words:
                self.by_kind.setdefault((matcher.stream, kind), {}).setdefault(key, set()).add(matcher.id)
        self.number_words = frozenset(number_words)
        self.candidates = functools.lru_cache(maxsize=65536)(self._candidates)

    def _candidates(self, stream: str, word: str) -> frozenset[int]:
        def kind(name: str) -> dict[str, set[int]]:
            return self.by_kind.get((stream, name), {})

        found: set[int] = set()
        forms = {word} | {word[len(p):] for p in _PROCLITICS if word.startswith(p) and len(word) > len(p) + 1}
        exact, prefix, suffix = kind("exact"), kind("prefix"), kind("suffix")
        for form in forms:
            found.update(exact.get(form, ()))
            for end in range(1, len(form) + 1):
                found.update(prefix.get(form[:end], ()))
        for start in range(len(word)):
            found.update(suffix.get(word[start:], ()))
        for key, ids in kind("contains").items():
            if key in word:
                found.update(ids)
        if word.isdigit() or word in self.number_words:
            found.update(*kind("number").values())
        if word[:1].isdigit():
            found.update(*kind("digits").values())
        found.update(*kind("any").values())
        return frozenset(found)


# ---------------------------------------------------------------------------------------------------------
# Reading a note


@dataclass(frozen=True)
class _Mention:
    code: str
    first: int
    last: int


class _Streams:
    """The note's tokens joined by spaces, once per stream, with each token's offset and the matchers that
    can start at it. Common English words are left out of the skeleton stream: their skeletons collide with
    Arabizi ("my cell" and "ma gakul" are both "m kl", "and some" is "endi sim")."""

    def __init__(self, note: Note, first_words: _FirstWordIndex, masked: frozenset[int] = frozenset(),
                 english_words: frozenset[str] = frozenset()):
        self.text: dict[str, str] = {}
        self.starts: dict[str, list[int]] = {}
        self.positions: dict[str, dict[int, list[int]]] = {}
        for stream, words in ((TEXT_STREAM, note.keys), (ARABIZI_STREAM, note.skeletons)):
            hidden = masked
            if stream == ARABIZI_STREAM:
                if not any(note.is_latin):
                    continue
                hidden = masked | {i for i, key in enumerate(note.keys) if key in english_words}
            # A "|" between clauses keeps patterns from matching across punctuation.
            starts, pieces, position = [], [], 0
            for index, word in enumerate(words):
                if index and note.clauses[index] != note.clauses[index - 1]:
                    pieces.append(" |")
                    position += 2
                starts.append(position)
                piece = "_" if index in hidden else word
                pieces.append(" " + piece)
                position += 1 + len(piece)
            self.starts[stream] = starts
            self.text[stream] = "".join(pieces) + " "
            positions: dict[int, list[int]] = {}
            for index, word in enumerate(words):
                if index not in hidden:
                    for matcher_id in first_words.candidates(stream, word):
                        positions.setdefault(matcher_id, []).append(index)
            self.positions[stream] = positions

    def find(self, matchers: tuple[Matcher, ...], wanted=lambda matcher_id: True):
        """Yield (matcher id, first token, last token, match) for every match in the note of a wanted matcher,
        trying each only at the words the index offered it."""
        for stream, positions in self.positions.items():
            text, starts = self.text[stream], self.starts[stream]
            for matcher_id, where in positions.items():
                if not wanted(matcher_id):
                    continue
                regex = matchers[matcher_id].regex
                for position in where:
                    match = regex.match(text, starts[position])
                    if match:
                        last = bisect_left(starts, match.end()) - 1
                        if position <= last:
                            yield matcher_id, position, last, match


class Assessor:
    """Assesses cases against one lexicon, compiled once."""

    def __init__(self, lexicon: Lexicon):
        self.lexicon = lexicon

    @classmethod
    def from_directory(cls, path: str | Path) -> "Assessor":
        return cls(Lexicon.load(Path(path)))

    @property
    def lexicon_version(self) -> str:
        return self.lexicon.version

    def assess(self, facts: CaseFacts) -> Assessment:
        reasons = self._text_reasons(facts.narrative) if facts.narrative else []
        return self._conclude(reasons + _checklist_reasons(facts))

    def _text_reasons(self, text: str) -> list[Reason]:
        """One reason per code, quoting each stretch of the note behind it; overlapping mentions of one code
        ("راح انتحر" and "انتحر الليلة") are quoted as one stretch."""
        note = tokenise(text)
        spans: dict[str, list[list[int]]] = {}
        for mention in sorted(self._read_narrative(note), key=lambda m: (m.first, m.last)):
            merged = spans.setdefault(mention.code, [])
            if merged and mention.first <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], mention.last)
            else:
                merged.append([mention.first, mention.last])
        return [
            Reason(code, tuple(dict.fromkeys(note.quote(first, last) for first, last in stretches)), SOURCE_TEXT)
            for code, stretches in spans.items()
        ]

    # -- text ---------------------------------------------------------------------------------------------

    def _read_narrative(self, note: Note) -> list[_Mention]:
        """The note's mentions, each read in its context, less those a more serious mention covers."""
        lexicon = self.lexicon
        if not note.keys:
            return []
        streams = _Streams(note, lexicon.index, english_words=lexicon.english_words)
        masked = frozenset(
            index
            for _, first, last, _ in streams.find(lexicon.matchers, lexicon.idiom_ids.__contains__)
            for index in range(first, last + 1)
        )
        if masked:
            streams = _Streams(note, lexicon.index, masked, lexicon.english_words)
        clauses = self._clauses(note)
        markers: dict[str, set[int]] = {kind: set() for kind in lexicon.context}
        raw: list[tuple[Group, int, int, re.Match]] = []
        for matcher_id, first, last, match in streams.find(lexicon.matchers):
            owner, what = lexicon.owners[matcher_id]
            if owner == "context":
                markers[what].update(range(first, last + 1))
            elif owner == "group":
                raw.append((what, first, last, match))
        # "بعد ما", "قبل ما" (after, before) are not negations.
        markers["negation"] = markers.get("negation", set()) - markers.pop("not_negation", set())
        for kind in _LOCAL_KINDS:
            markers.setdefault(kind, set())
        markers["bridge"] = {i for i, key in enumerate(note.keys) if key in lexicon.negation_bridges}
        # A "resolved" ending covers its own clause and the one before ("he threatened her, but it turned out
        # a lie and it's over"); groups list it only where it resolves something (extortion, a deadline).
        resolved_clauses = {clause for i in markers.get("resolved", ()) for clause in (clauses[i], clauses[i] - 1)}
        surroundings = {
            kind: indexes for kind, indexes in markers.items()
            if indexes and kind not in _LOCAL_KINDS and kind != "resolved"
        }

        raw = [
            (group, first, last, match) for group, first, last, match in raw
            if not any(index in masked for index in range(first, last + 1))
            and (group.maximum is None and group.minimum is None
                 or self._number_within(match, group.minimum, group.maximum))
        ]
        ungated = [(g, f, l) for g, f, l, _ in raw if not g.near]
        found: list[_Mention] = []
        for group, first, last, _ in raw:
            if group.near and not any(
                other.code in group.near and (abs(f - last) <= group.within or abs(first - l) <= group.within)
                for other, f, l in ungated
            ):
                continue
            mention = self._in_context(group, first, last, clauses, markers, surroundings, resolved_clauses)
            if mention is not None:
                found.append(mention)
        return [mention for mention in found if not self._subsumed(mention, found)]

    def _subsumed(self, mention: _Mention, mentions: list[_Mention]) -> bool:
        """True if another mention at least as serious covers the same words ("انتحر" inside "راح انتحر")."""
        rank = LEVELS.index
        level = rank(self.lexicon.codes[mention.code].level)
        return any(
            other is not mention
            and other.first <= mention.first and mention.last <= other.last
            and (other.first, other.last) != (mention.first, mention.last)
            and rank(self.lexicon.codes[other.code].level) >= level
            for other in mentions
        )

    def _clauses(self, note: Note) -> list[int]:
        clauses, shift = [], 0
        for index, key in enumerate(note.keys):
            if index and key in self.lexicon.clause_breaks:
                shift += 1
            clauses.append(note.clauses[index] + shift)
        return clauses

    def _number_within(self, match: re.Match, minimum: float | None, maximum: float | None) -> bool:
        value = next((g for g in match.groups() if g is not None), None)
        if value is None:
            return False
        number = int(value) if value.isdigit() else self.lexicon.numbers.get(value)
        return (number is not None and (minimum is None or number >= minimum)
                and (maximum is None or number <= maximum))

    def _in_context(self, group, first, last, clauses, markers, surroundings, resolved_clauses) -> _Mention | None:
        policy = group.policy
        clause = clauses[first]
        kinds = self._kinds_around(first, last, clauses, markers, surroundings, resolved_clauses)
        for kind in policy.discounted_by:
            if kind in kinds:
                return _Mention(self.lexicon.discount_codes[kind], first, last)
        negation = self._negation_before(first, clauses, markers)
        if negation is None and policy.negation_inside:
            negation = self._negation_before(last, clauses, markers, stop=first)
        if negation is not None:
            return _apply(policy.when_negated, group.code, min(negation, first), last)
        if "past" in kinds and policy.when_past:
            return _apply(policy.when_past, group.code, first, last)
        # A condition inside the mention counts too: "اهلها اذا شافوا الصور" has not happened.
        scope = range(max(0, first - self.lexicon.negation_window), last + 1)
        if policy.when_conditional and any(i in markers["conditional"] and clauses[i] == clause for i in scope):
            return _apply(policy.when_conditional, group.code, first, last)
        return _Mention(group.code, first, last)

    def _kinds_around(self, first, last, clauses, markers, surroundings, resolved_clauses) -> set[str]:
        """The context kinds of a mention: those whose markers stand in its clause, and for the kinds given a
        reach in `context_windows`, within that many words of it. A whole clause is too wide for a third
        party: in "she wants to kill herself and her cousin posted the photos last month" the risk is her
        own. Someone else's context never covers the caller's own words inside the mention ("نفسي",
        "راح انتحر", "myself")."""
        clause, windows = clauses[first], self.lexicon.context_windows
        kinds = set()
        for kind, indexes in surroundings.items():
            before, after = windows.get(kind, (len(clauses), len(clauses)))
            if any(
                clauses[i] == clause and first - before <= i <= last + after
                and not (kind == "past" and self._reported_between(i, first, last, markers))
                for i in indexes
            ):
                kinds.add(kind)
        if kinds & _NOT_PRESENT and any(
            clauses[i] == clause for i in markers["present"]
            if first - _PRESENT_REACH[0] <= i <= last + _PRESENT_REACH[1]
        ):
            kinds -= _NOT_PRESENT
        if clause in resolved_clauses:
            kinds.add("resolved")
        if "third_party" in kinds and "past" in kinds:
            kinds.add("third_party_past")
        if kinds and any(i in markers["first_person"] for i in range(first, last + 1)):
            kinds -= _SOMEONE_ELSE
        return kinds

    @staticmethod
    def _reported_between(marker: int, first: int, last: int, markers) -> bool:
        """True if a reporting verb ("تكول", "says") stands between a past marker and the mention: in "تعرفت
        عليه قبل شهرين وكالت اريد اموت" the two months are when they met, and what she says is now."""
        low, high = (marker, first) if marker < first else (last, marker)
        return any(low < i < high for i in markers["reporting"])

    def _negation_before(self, index, clauses, markers, stop: int = -1) -> int | None:
        """The negation that governs the word at `index`: right before it, or separated from it only by
        auxiliaries ("ما راح انتحر", "not going to"). A negation further back negates something else
        ("ماكو حل، راح انتحر" - no way out, I will kill myself), and one inside a condition ("اذا ما تدفعين
        الليلة" - if you don't pay tonight) is the condition's, not the deadline's."""
        if not markers["negation"]:
            return None
        clause = clauses[index]
        position = index - 1
        while position > stop and clauses[position] == clause and position not in markers["negation"]:
            if position not in markers["bridge"] or index - position > self.lexicon.negation_window + 2:
                return None
            position -= 1
        if position <= stop or clauses[position] != clause:
            return None
        start = position
        while start - 1 > stop and start - 1 in markers["negation"] and clauses[start - 1] == clause:
            start -= 1
        if any(i in markers["conditional"] and clauses[i] == clause for i in range(max(0, start - 3), start)):
            return None
        return start

    # -- conclusion ---------------------------------------------------------------------------------------

    def _conclude(self, reasons: list[Reason]) -> Assessment:
        codes = self.lexicon.codes
        ideation = [r for r in reasons if r.code in IDEATION_CODES]
        stressors = [r for r in reasons if r.code in ACUTE_STRESSOR_CODES]
        if ideation and stressors:
            evidence = tuple(dict.fromkeys(e for r in (*ideation, *stressors) for e in r.evidence))
            source = SOURCE_TEXT if any(r.source == SOURCE_TEXT for r in (*ideation, *stressors)) else SOURCE_CHECKLIST
            reasons.append(Reason(IDEATION_WITH_STRESSOR, evidence, source))
        rank = {level: position for position, level in enumerate(LEVELS)}
        level = max((codes[r.code].level for r in reasons), key=rank.__getitem__, default="low")
        ordered = sorted(reasons, key=lambda r: (-rank[codes[r.code].level], -codes[r.code].weight))
        weight = sum(codes[r.code].weight for r in ordered)
        score = min(LEVEL_CEILING[level], LEVEL_FLOOR[level] + weight) if reasons else 0
        return Assessment(level=level, score=score, reasons=tuple(ordered), lexicon_version=self.lexicon.version)


def _apply(target: str | None, code: str, first: int, last: int) -> _Mention | None:
    if target == "drop":
        return None
    return _Mention(target or code, first, last)


def _checklist_reasons(facts: CaseFacts) -> list[Reason]:
    reasons = []
    if facts.suicidal_thoughts is True:
        reasons.append(Reason("suicidal_thoughts", ("suicidal_thoughts=true",), SOURCE_CHECKLIST))
    if facts.threat_of_violence is True:
        reasons.append(Reason("violence_threat", ("threat_of_violence=true",), SOURCE_CHECKLIST))
    if facts.material_published is True:
        reasons.append(Reason("published", ("material_published=true",), SOURCE_CHECKLIST))
    age = facts.victim_age
    if isinstance(age, int) and not isinstance(age, bool) and 0 <= age < 18:
        reasons.append(Reason("minor", (f"victim_age={age}",), SOURCE_CHECKLIST))
    hours = facts.deadline_hours
    if isinstance(hours, (int, float)) and not isinstance(hours, bool) and math.isfinite(hours):
        code = "deadline_24h" if hours <= 24 else "extortion"
        reasons.append(Reason(code, (f"deadline_hours={hours:g}",), SOURCE_CHECKLIST))
    return reasons


_default: Assessor | None = None
_default_lock = threading.Lock()


def default_assessor() -> Assessor:
    """The assessor built from the lexicons shipped with the service, compiled on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Assessor.from_directory(DEFAULT_LEXICON_DIRECTORY)
    return _default


def assess(facts: CaseFacts) -> Assessment:
    """Assess a case with the shipped lexicons."""
    return default_assessor().assess(facts)
