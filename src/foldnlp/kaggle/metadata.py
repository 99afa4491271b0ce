"""Kaggle metadata of the bundle: slugs, titles that resolve to them, dataset-metadata.json, kernel-metadata.json.

Rules, from the `kaggle` package (2.2.4, kaggle/api/kaggle_api_extended.py) and its docs/datasets_metadata.md and
docs/kernels_metadata.md:
- ids are "owner/slug"; a slug is what python-slugify makes of the title: lowercase ASCII letters and digits in
  runs joined by single hyphens (`kaggle kernels push` warns when the title does not resolve to the id's slug);
- datasets: slug and title 6-50 characters, exactly one license;
- kernels: slug and title at least 5 characters; language python|r|rmarkdown; kernel_type script|notebook;
  booleans are JSON booleans (the API also takes "true"/"false" strings, we write real booleans);
  dataset_sources are "owner/slug", competition_sources competition slugs.
"""

from __future__ import annotations

import re

from foldnlp.errors import InputError

DATASET_METADATA = "dataset-metadata.json"
KERNEL_METADATA = "kernel-metadata.json"
DATASET_KINDS = ("code", "weights", "wheels")  # the three datasets of a bundle: <name>-<kind>
_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
DATASET_SLUG_LEN = (6, 50)
KERNEL_SLUG_MIN = 5
# The longest bundle name whose "<name>-weights" dataset slug still fits in 50 characters.
NAME_MAX = DATASET_SLUG_LEN[1] - len("-weights")


def slugify(text: str) -> str:
    """Kaggle's slug of an ASCII title (python-slugify's rule): lowercase, every run of other characters → '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def title_of(slug: str) -> str:
    """A title that resolves to `slug`: its words, space-separated."""
    return slug.replace("-", " ")


def check_name(name: str) -> str:
    """The bundle name: a slug short enough for '<name>-weights' (the longest dataset slug)."""
    if not _SLUG.fullmatch(name) or not KERNEL_SLUG_MIN <= len(name) <= NAME_MAX:
        raise InputError(f"--name {name!r}: use {KERNEL_SLUG_MIN}-{NAME_MAX} lowercase letters, digits and single "
                         "hyphens (it becomes the kernel slug and the prefix of the three dataset slugs)")
    return name


def check_owner(user: str) -> str:
    if not _OWNER.fullmatch(user):
        raise InputError(f"--user {user!r}: a Kaggle username is letters, digits, '-' or '_' (no '/' or spaces)")
    return user


def check_competition(slug: str) -> str:
    if not _SLUG.fullmatch(slug):
        raise InputError(f"--competition {slug!r}: a competition slug is lowercase letters, digits and hyphens, as "
                         "in the competition's URL (e.g. chaii-hindi-and-tamil-question-answering)")
    return slug


def dataset_slug(name: str, kind: str) -> str:
    return f"{name}-{kind}"


def dataset_metadata(user: str, slug: str, license_name: str) -> dict:
    """dataset-metadata.json of one dataset (private by default: `kaggle datasets create` without --public)."""
    return {"title": title_of(slug), "id": f"{user}/{slug}", "licenses": [{"name": license_name}]}


def kernel_metadata(user: str, slug: str, code_file: str, *, dataset_ids: list[str], competition: str,
                    gpu: bool) -> dict:
    return {
        "id": f"{user}/{slug}",
        "title": title_of(slug),
        "code_file": code_file,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": gpu,
        "enable_tpu": False,
        "enable_internet": False,  # code competitions run with the internet off
        "dataset_sources": dataset_ids,
        "competition_sources": [competition],
        "kernel_sources": [],
        "model_sources": [],
    }


def problems_dataset(meta: dict) -> list[str]:
    """What Kaggle would refuse or misread in a dataset-metadata.json; [] when valid."""
    problems = _id_problems(meta, DATASET_SLUG_LEN)
    title = meta.get("title")
    if not isinstance(title, str) or not DATASET_SLUG_LEN[0] <= len(title) <= DATASET_SLUG_LEN[1]:
        problems.append(f"title {title!r}: a string of {DATASET_SLUG_LEN[0]}-{DATASET_SLUG_LEN[1]} characters")
    problems += _title_resolves(meta)
    licenses = meta.get("licenses")
    if not (isinstance(licenses, list) and len(licenses) == 1 and isinstance(licenses[0], dict)
            and isinstance(licenses[0].get("name"), str) and licenses[0]["name"]):
        problems.append(f"licenses {licenses!r}: exactly one entry {{'name': ...}}")
    return problems


def problems_kernel(meta: dict, files: set[str]) -> list[str]:
    """What Kaggle would refuse or misread in a kernel-metadata.json (files: names in the kernel folder)."""
    problems = _id_problems(meta, (KERNEL_SLUG_MIN, None))
    title = meta.get("title")
    if not isinstance(title, str) or len(title) < KERNEL_SLUG_MIN:
        problems.append(f"title {title!r}: a string of at least {KERNEL_SLUG_MIN} characters")
    problems += _title_resolves(meta)
    if meta.get("code_file") not in files:
        problems.append(f"code_file {meta.get('code_file')!r} is not in the kernel folder")
    expected = {"language": ("python", "r", "rmarkdown"), "kernel_type": ("script", "notebook")}
    problems += [f"{key} {meta.get(key)!r}: one of {', '.join(values)}" for key, values in expected.items()
                 if meta.get(key) not in values]
    problems += [f"{key} {meta.get(key)!r}: a JSON boolean" for key in
                 ("is_private", "enable_gpu", "enable_tpu", "enable_internet") if not isinstance(meta.get(key), bool)]
    for key in ("dataset_sources", "competition_sources", "kernel_sources", "model_sources"):
        if not isinstance(meta.get(key), list) or not all(isinstance(v, str) for v in meta[key]):
            problems.append(f"{key} {meta.get(key)!r}: a list of strings")
    for source in meta.get("dataset_sources") or []:
        owner, _, slug = str(source).partition("/")
        if not _OWNER.fullmatch(owner) or not _SLUG.fullmatch(slug):
            problems.append(f"dataset_sources entry {source!r}: 'owner/dataset-slug'")
    problems += [f"competition_sources entry {c!r}: a competition slug" for c in meta.get("competition_sources") or []
                 if not _SLUG.fullmatch(str(c))]
    return problems


def _id_problems(meta: dict, length: tuple[int, int | None]) -> list[str]:
    ident = meta.get("id")
    owner, sep, slug = ident.partition("/") if isinstance(ident, str) else ("", "", "")
    low, high = length
    if not sep or not _OWNER.fullmatch(owner) or not _SLUG.fullmatch(slug) or len(slug) < low or (
            high is not None and len(slug) > high):
        span = f"{low}-{high}" if high else f"at least {low}"
        return [f"id {ident!r}: 'owner/slug' with a slug of {span} lowercase letters, digits and single hyphens"]
    return []


def _title_resolves(meta: dict) -> list[str]:
    ident, title = meta.get("id"), meta.get("title")
    if isinstance(ident, str) and isinstance(title, str) and slugify(title) != ident.partition("/")[2]:
        return [f"title {title!r} resolves to {slugify(title)!r}, not to the id's slug {ident.partition('/')[2]!r}"]
    return []
