"""The bundled pose library (SPEC §8.2): categories and poses, read once and checked.

`data/categories.json` holds a tree of categories (`parent_id` null at the top);
`data/library.json` holds the poses, each with 18 COCO-18 keypoints in OpenPose order
(`KEYPOINT_NAMES`) as `[x, y, v]`: x and y are fractions (0..1) of a 3:4 portrait frame's
width and height from its top-left corner, v is 0 (not visible: the position is an estimate,
renderers skip it), 1 (occluded) or 2 (visible). Loading refuses broken data (duplicate ids,
unknown parents, cycles, unknown categories, bad keypoints) with a ValueError naming every
problem, so a bad edit fails the first test rather than a request.

Listing (`search`) order: featured poses first, then by name (case-folded), then id. The
cursor is the last pose's sort key, base64url-encoded JSON: paging survives poses being
added or removed between releases. Filters: `category` includes its descendants; `search`
matches when every word of the query starts a word of the name, description or tags (case,
accents and punctuation ignored: "yog" finds "Yoga", "hip-hop" finds "hip hop", "hop" does not
find "shopping"); `gender` `female`/`male` also returns `unisex` poses (a unisex pose
suits everyone), while `gender=unisex` returns only unisex poses.
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib.resources
import json
import re
from typing import TYPE_CHECKING, Any, Final

import attrs
import cattrs

from lumiku.apps.fields import Problems, clean
from lumiku.apps.pose_generator.blocklist import words
from lumiku.convert import converter
from lumiku.errors import NotFound

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

KEYPOINT_NAMES: Final = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)
DIFFICULTIES: Final = ("beginner", "intermediate", "advanced")
GENDERS: Final = ("male", "female", "unisex")
DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
SEARCH_MAX: Final = 100
_SLUG: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

Keypoint = tuple[float, float, int]


@attrs.frozen
class Category:
    id: str
    name: str
    parent_id: str | None
    description: str
    sort: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "parent_id": self.parent_id,
            "description": self.description,
            "sort": self.sort,
        }


@attrs.frozen
class Pose:
    id: str
    name: str
    description: str
    category_id: str
    difficulty: str
    gender_suitability: str
    tags: tuple[str, ...]
    featured: bool
    keypoints: tuple[Keypoint, ...]

    @property
    def sort_key(self) -> tuple[int, str, str]:
        return (0 if self.featured else 1, self.name.casefold(), self.id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "category_id": self.category_id,
            "difficulty": self.difficulty,
            "gender_suitability": self.gender_suitability,
            "tags": list(self.tags),
            "featured": self.featured,
            "keypoints": [list(point) for point in self.keypoints],
        }


@attrs.frozen
class Page:
    """Poses in listing order; `next_cursor` fetches the rest (None at the end)."""

    poses: tuple[Pose, ...]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"poses": [p.as_dict() for p in self.poses], "next_cursor": self.next_cursor}


@attrs.frozen
class _CategoriesDoc:
    categories: tuple[Category, ...]


@attrs.frozen
class _KeypointFormat:
    name: str
    names: tuple[str, ...]
    frame: str
    visibility: str


@attrs.frozen
class _LibraryDoc:
    keypoint_format: _KeypointFormat
    poses: tuple[Pose, ...]


def _structure(doc: Any, cls: type[Any], what: str) -> Any:
    try:
        return converter.structure(doc, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        details = "; ".join(cattrs.transform_error(exc))
        raise ValueError(f"{what} is malformed: {details}") from None


def _keypoint_problems(pose: Pose) -> Iterable[str]:
    if len(pose.keypoints) != len(KEYPOINT_NAMES):
        yield f"pose {pose.id!r} has {len(pose.keypoints)} keypoints, not {len(KEYPOINT_NAMES)}"
        return
    for name, (x, y, v) in zip(KEYPOINT_NAMES, pose.keypoints, strict=True):
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0) or v not in (0, 1, 2):
            yield f"pose {pose.id!r}: keypoint {name} {[x, y, v]} is out of range"


class Library:
    """Categories and poses, checked when built; read-only afterwards."""

    def __init__(self, categories: Iterable[Category], poses: Iterable[Pose]) -> None:
        self.categories: dict[str, Category] = {}
        self.poses: dict[str, Pose] = {}
        problems: list[str] = []
        for category in categories:
            if category.id in self.categories or not _SLUG.match(category.id):
                problems.append(f"category id {category.id!r} is repeated or not a slug")
            self.categories[category.id] = category
        self._children: dict[str | None, list[str]] = {}
        for category in self.categories.values():
            if category.parent_id is not None and category.parent_id not in self.categories:
                problems.append(f"category {category.id!r} has an unknown parent")
            self._children.setdefault(category.parent_id, []).append(category.id)
        problems += self._cycles()
        for pose in poses:
            if pose.id in self.poses or not _SLUG.match(pose.id):
                problems.append(f"pose id {pose.id!r} is repeated or not a slug")
            if pose.category_id not in self.categories:
                problems.append(f"pose {pose.id!r} has an unknown category")
            if pose.difficulty not in DIFFICULTIES or pose.gender_suitability not in GENDERS:
                problems.append(f"pose {pose.id!r} has an unknown difficulty or gender")
            problems += _keypoint_problems(pose)
            self.poses[pose.id] = pose
        if problems:
            raise ValueError("the pose library is broken: " + "; ".join(problems))
        self._ordered = tuple(sorted(self.poses.values(), key=lambda p: p.sort_key))
        self._haystacks = {
            p.id: " " + " ".join(words(" ".join((p.name, p.description, *p.tags))))
            for p in self._ordered
        }

    def _cycles(self) -> list[str]:
        problems = []
        for category in self.categories.values():
            seen = {category.id}
            parent = category.parent_id
            while parent is not None and parent in self.categories:
                if parent in seen:
                    problems.append(f"category {category.id!r} is its own ancestor")
                    break
                seen.add(parent)
                parent = self.categories[parent].parent_id
        return problems

    def descendants(self, category_id: str) -> frozenset[str]:
        """`category_id` and every category below it."""
        found, pending = set(), [category_id]
        while pending:
            current = pending.pop()
            found.add(current)
            pending.extend(self._children.get(current, ()))
        return frozenset(found)

    def tree(self) -> list[dict[str, Any]]:
        """The categories as nested dicts (`children`, `pose_count` including descendants),
        siblings ordered by `sort` then name."""

        def node(category: Category) -> dict[str, Any]:
            below = self.descendants(category.id)
            return {
                **category.as_dict(),
                "pose_count": sum(1 for p in self.poses.values() if p.category_id in below),
                "children": nodes(category.id),
            }

        def nodes(parent: str | None) -> list[dict[str, Any]]:
            siblings = [self.categories[c] for c in self._children.get(parent, ())]
            return [node(c) for c in sorted(siblings, key=lambda c: (c.sort, c.name, c.id))]

        return nodes(None)

    def find(self, pose_id: str) -> Pose | None:
        return self.poses.get(pose_id)

    def get(self, pose_id: str) -> Pose:
        """The pose with `pose_id`; NotFound otherwise."""
        pose = self.poses.get(pose_id)
        if pose is None:
            raise NotFound("No such pose in the library.")
        return pose

    def search(
        self,
        *,
        category: str | None = None,
        search: str | None = None,
        difficulty: str | None = None,
        gender: str | None = None,
        featured: bool | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        problems: Problems | None = None,
    ) -> Page:
        """A page of the poses matching every given filter (see the module docstring);
        ValidationFailed naming each bad parameter, together with any already in
        `problems` (a caller's own parsing problems)."""
        problems = Problems() if problems is None else problems
        if category is not None and category not in self.categories:
            problems.add("category", "is not a category of the library")
        if search is not None and len(clean(search)) > SEARCH_MAX:
            problems.add("search", f"must be at most {SEARCH_MAX} characters")
        if difficulty is not None and difficulty not in DIFFICULTIES:
            problems.add("difficulty", f"must be one of {', '.join(DIFFICULTIES)}")
        if gender is not None and gender not in GENDERS:
            problems.add("gender", f"must be one of {', '.join(GENDERS)}")
        if not 1 <= limit <= MAX_LIMIT:
            problems.add("limit", f"must be between 1 and {MAX_LIMIT}")
        after = decode_cursor(cursor, problems) if cursor is not None else None
        problems.raise_if_any()

        terms = [" " + term for term in words(search or "")]
        in_category = self.descendants(category) if category is not None else None
        genders = {gender, "unisex"} if gender is not None else None
        matches = []
        for pose in self._ordered:
            if (
                (after is not None and pose.sort_key <= after)
                or (in_category is not None and pose.category_id not in in_category)
                or (difficulty is not None and pose.difficulty != difficulty)
                or (genders is not None and pose.gender_suitability not in genders)
                or (featured is not None and pose.featured != featured)
                or not all(term in self._haystacks[pose.id] for term in terms)
            ):
                continue
            matches.append(pose)
            if len(matches) > limit:
                break
        page = tuple(matches[:limit])
        more = len(matches) > limit
        return Page(page, encode_cursor(page[-1].sort_key) if more else None)


def encode_cursor(key: tuple[int, str, str]) -> str:
    """The opaque cursor for the poses after the one whose sort key is `key`."""
    raw = json.dumps(list(key), ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, problems: Problems) -> tuple[int, str, str] | None:
    """The sort key inside a cursor from `encode_cursor`; None and a `cursor` problem
    otherwise."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        key = None
    if (
        isinstance(key, list)
        and len(key) == 3
        and key[0] in (0, 1)
        and not isinstance(key[0], bool)
        and isinstance(key[1], str)
        and isinstance(key[2], str)
    ):
        return (key[0], key[1], key[2])
    problems.add("cursor", "is not a cursor from a previous page")
    return None


def parse(categories_doc: Any, library_doc: Any) -> Library:
    """A Library from the two JSON documents; ValueError naming every problem."""
    categories = _structure(categories_doc, _CategoriesDoc, "categories.json").categories
    library: _LibraryDoc = _structure(library_doc, _LibraryDoc, "library.json")
    if library.keypoint_format.names != KEYPOINT_NAMES:
        raise ValueError("library.json: keypoint names are not COCO-18 in OpenPose order")
    return Library(categories, library.poses)


def _read(name: str) -> Any:
    resource = importlib.resources.files("lumiku.apps.pose_generator").joinpath(f"data/{name}")
    return json.loads(resource.read_text(encoding="utf-8"))


@functools.cache
def bundled() -> Library:
    """The library shipped in `data/`, read and checked once."""
    return parse(_read("categories.json"), _read("library.json"))


def categories_tree() -> list[dict[str, Any]]:
    """`GET /categories`: the bundled category tree."""
    return bundled().tree()


def get(pose_id: str) -> Pose:
    """`GET /library/{id}`: the bundled pose; NotFound otherwise."""
    return bundled().get(pose_id)


def find(pose_id: str) -> Pose | None:
    return bundled().find(pose_id)


def search(
    *,
    category: str | None = None,
    search: str | None = None,
    difficulty: str | None = None,
    gender: str | None = None,
    featured: bool | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    """`GET /library`: a page of the bundled library (see `Library.search`)."""
    return bundled().search(
        category=category,
        search=search,
        difficulty=difficulty,
        gender=gender,
        featured=featured,
        limit=limit,
        cursor=cursor,
    )


_TRUE: Final = ("true", "1", "yes")
_FALSE: Final = ("false", "0", "no")


def search_args(args: Mapping[str, str]) -> Page:
    """`GET /library?…` from its query string: `limit` an integer, `featured` true/false,
    empty values treated as absent, other parameters ignored; ValidationFailed naming each
    bad parameter (those of `search` included)."""
    problems = Problems()
    given = {k: v for k, v in args.items() if v != ""}
    limit = DEFAULT_LIMIT
    if "limit" in given:
        try:
            limit = int(given["limit"])
        except ValueError:
            problems.add("limit", "must be an integer")
    featured = None
    if "featured" in given:
        flag = given["featured"].lower()
        if flag in _TRUE + _FALSE:
            featured = flag in _TRUE
        else:
            problems.add("featured", "must be true or false")
    return bundled().search(
        category=given.get("category"),
        search=given.get("search"),
        difficulty=given.get("difficulty"),
        gender=given.get("gender"),
        featured=featured,
        limit=limit,
        cursor=given.get("cursor"),
        problems=problems,
    )
