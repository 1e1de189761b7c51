"""Synthetic MovieLens data: a snapshot of the six files, and daily increment files that continue it in time.

Output is byte-for-byte deterministic for a (seed, scale, dates) combination, at any size from a few hundred ratings
to ML-32M, and is written in the exact MovieLens CSV format (see ``netflix_elt.contracts``).

How it works
------------
Small dimension tables are built with NumPy from a seeded PCG64 generator: movies (id with gaps, the time the movie
was added to the catalogue, release year, popularity, quality, external ids), users (how many ratings each gives,
their activity window, rating bias) and taggers. The catalogue grows over time, so the set of movies a user can rate
depends on when the user was active: the timeline is cut into eras and, for each era, the movies available at its
start are ranked by popularity (the ``era_rank`` table).

The large fact files are generated in DuckDB SQL. Every random quantity of a row is a pure function of the seed and
the row's identity through DuckDB's ``hash()``, never ``random()``, so results do not depend on thread scheduling.
(``hash(a, b, c)`` combines its arguments by xor, so the ``rnd`` macro hashes that result once more.)
User *u* with *n* ratings picks the popularity ranks ``(a*j + b) % K`` for ``j < n``: with ``a`` coprime to ``K``
and ``n <= K`` these are distinct, so there is no duplicate (userId, movieId) pair and no deduplication pass.
``K`` (the user's reach into the popularity ranking) is skewed per user, which gives the long tail of movie
popularity. Every file is sorted on a unique key before it is written.
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import gzip as gzip_module
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from netflix_elt import contracts

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

DEFAULT_START = dt.date(1996, 1, 1)
DEFAULT_END = dt.date(2023, 10, 12)
HALF_STARS_FROM = dt.date(2003, 2, 12)  # MovieLens only allowed whole stars before this date
TAGGING_FROM = dt.date(2005, 12, 1)  # MovieLens had no tags before this date
GENOME_TAG_COUNT = 1128
DEFAULT_DAILY_SHARE = 0.003  # a day's new ratings, as a share of the snapshot's ratings

_ERAS = 128  # the timeline is cut into this many eras; a user can rate what was in the catalogue at an era start
_MIN_RATINGS_PER_USER = 20  # MovieLens only includes users with at least 20 ratings
_LAUNCH_SHARE = 0.04  # share of the catalogue available from the first day
_RATING_MEAN = 3.71
_RATING_SPREAD = 0.7
_IMDB_DAILY_BASE = 9_000_000  # imdb ids at and above this are kept for movies added by daily increments
_TMDB_DAILY_BASE = 1_300_000


@dataclass(frozen=True)
class Scale:
    """Sizes of a generated snapshot. Row counts of the files are exactly these numbers."""

    name: str
    ratings: int
    movies: int
    users: int
    tags: int
    genome_movies: int  # movies with a tag genome; genome-scores has genome_movies * 1128 rows
    max_movie_id: int  # movieIds spread over 1..about this number, with gaps

    def with_ratings(self, ratings: int) -> Scale:
        """A custom size: the given number of ratings, every other size scaled proportionally."""
        if ratings < 1:
            raise ValueError(f"ratings must be at least 1, got {ratings}")
        f = ratings / self.ratings
        users = max(1, round(self.users * f))
        per_user = math.ceil(ratings / users)
        movies = max(round(self.movies * f), 2 * per_user, 10)
        genome = min(movies, max(1, round(self.genome_movies * f)))
        return Scale(
            name="custom",
            ratings=ratings,
            movies=movies,
            users=users,
            tags=max(0, round(self.tags * f)),
            genome_movies=genome,
            max_movie_id=max(movies, round(movies * self.max_movie_id / self.movies)),
        )

    @property
    def default_daily_ratings(self) -> int:
        return max(1, round(self.ratings * DEFAULT_DAILY_SHARE))


SCALES: dict[str, Scale] = {
    s.name: s
    for s in (
        Scale("tiny", ratings=1_000, movies=100, users=20, tags=100, genome_movies=20, max_movie_id=400),
        Scale("small", ratings=100_836, movies=9_742, users=610, tags=3_683, genome_movies=1_000, max_movie_id=193_609),
        Scale(
            "medium",
            ratings=1_000_000,
            movies=25_000,
            users=6_200,
            tags=40_000,
            genome_movies=3_000,
            max_movie_id=120_000,
        ),
        Scale(
            "ml-25m",
            ratings=25_000_095,
            movies=62_423,
            users=162_541,
            tags=1_093_360,
            genome_movies=13_816,
            max_movie_id=209_171,
        ),
        Scale(
            "ml-32m",
            ratings=32_000_204,
            movies=87_585,
            users=200_948,
            tags=2_000_072,
            genome_movies=16_000,
            max_movie_id=292_757,
        ),
    )
}


@dataclass(frozen=True)
class FileResult:
    """One written file."""

    dataset: str
    path: Path
    rows: int
    bytes: int
    seconds: float


@dataclass(frozen=True)
class GenerateResult:
    """What one call wrote: a snapshot (day is None) or one day's increment files."""

    out_dir: Path
    scale: Scale
    seed: int
    day: dt.date | None
    files: tuple[FileResult, ...]
    seconds: float

    def rows(self, dataset: str) -> int:
        return next(f.rows for f in self.files if f.dataset == dataset)

    def summary(self) -> str:
        return format_summary([self])


def format_summary(results: Sequence[GenerateResult]) -> str:
    """A plain-text table of the files written, with totals."""
    files = [f for r in results for f in r.files]
    lines = [f"{'file':<32} {'rows':>14} {'size':>11} {'seconds':>8}"]
    lines += [f"{f.path.name:<32} {f.rows:>14,} {_human_bytes(f.bytes):>11} {f.seconds:>8.1f}" for f in files]
    total_seconds = sum(r.seconds for r in results)
    lines.append(
        f"{'total':<32} {sum(f.rows for f in files):>14,} {_human_bytes(sum(f.bytes for f in files)):>11} "
        f"{total_seconds:>8.1f}"
    )
    return "\n".join(lines)


def resolve_scale(scale: str | Scale, ratings: int | None = None) -> Scale:
    """A preset by name (or a Scale), optionally resized to a custom number of ratings."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        scale = SCALES[scale]
    return scale if ratings is None else scale.with_ratings(ratings)


# --------------------------------------------------------------------------------------------------------------------
# Word lists for titles and tags
# --------------------------------------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ADJECTIVES = _words(
    "Absolute Ancient Bitter Black Blue Broken Burning Cold Crimson Cruel Dangerous Dark Dead Deadly Deep Distant "
    "Electric Empty Endless Eternal Fallen Final Forbidden Forgotten Frozen Gentle Gilded Golden Great Green Hidden "
    "Hollow Holy Human Invisible Iron Last Little Lonely Lost Lucky Mad Midnight Modern Naked Perfect Private Quiet "
    "Red Restless Royal Savage Scarlet Secret Silent Silver Simple Sleeping Small Strange Sweet Thin Twisted Velvet "
    "Violent Wild Wicked Wrong Young"
)
_NOUNS = _words(
    "Abyss Affair Angel Answer Apartment Archive Arrow Autumn Avenue Ballad Bandit Bargain Beast Blood Boundary "
    "Bridge Brother Butterfly Cage Canyon Captain Carnival Castle Chase Circle City Code Colony Comet Conspiracy "
    "Corner Covenant Crossing Crown Dance Daughter Dawn Debt Desert Detective Diary Doctor Dragon Dream Echo Edge "
    "Empire Escape Exile Experiment Factor Falcon Family Fever Fire Flight Forest Fortune Frontier Game Garden Ghost "
    "Gift Girl Glass Gravity Guardian Harbor Harvest Heart Heist Highway Hero Horizon Hotel House Hunter Island "
    "Journey Jungle Justice Kingdom Kiss Labyrinth Lady Legacy Legend Letter Light Line Machine Man Map Mask Memory "
    "Mirror Mission Monster Moon Mountain Murder Night Noise Ocean Orchard Outlaw Paradise Passage Pilgrim Planet "
    "Prince Prisoner Promise Prophecy Protocol Queen Rain Ranger Rebel Revenge River Road Rose Secret Shadow Shore "
    "Signal Silence Sister Sky Soldier Song Spirit Spy Star Storm Stranger Summer Sun Survivor Sword Symphony Target "
    "Tide Tiger Tower Train Treasure Truth Tunnel Valley Vampire Voice Voyage Wall War Warrior Water Wave Wedding "
    "Widow Wind Winter Witness Wolf Woman World"
)
_NAMES = _words(
    "Adam Alice Amélie Anna Ben Björn Carlos Chloé Daniel Elena Ellie Emil François Frank Gaspard George Grace Hannah "
    "Harry Ingrid Jack Jeanne José Juliet Jürgen Kate Kenji Laura Leo Łucja Marguerite Maria Max Mia Mikhail Nina "
    "Noël Oscar Paul Renée Rosa Sam Sofia Søren Thomas Tomás Vera Victor Yuki Zoë"
)
_SURNAMES = _words(
    "Cole Garcia Müller Novak O'Brien Kowalski Dubois Tanaka Ivanova Rossi Nakamura Smith Jensen Håkansson Ortega "
    "Brennan Çelik Lindqvist"
)
_NICKNAMES = ("Bullet", "Doc", "Lucky", "Ace", "Kid", "Red", "Baby Face", "Slim", "Mad Dog", "Tiger")
_PLACES = (
    "Alaska",
    "Berlin",
    "Bombay",
    "Brooklyn",
    "Cairo",
    "Chicago",
    "Dakota",
    "Dublin",
    "Havana",
    "Hong Kong",
    "Istanbul",
    "Kyoto",
    "Lisbon",
    "London",
    "Manhattan",
    "Marseille",
    "México",
    "Montréal",
    "Moscow",
    "Nebraska",
    "Paris",
    "Reykjavík",
    "Rio",
    "Saigon",
    "São Paulo",
    "Shanghai",
    "Sicily",
    "Texas",
    "Tokyo",
    "Vienna",
    "Zürich",
)
_SERIES = (
    "Great Performances",
    "American Masters",
    "Masterpiece Theatre",
    "Nova",
    "Frontline",
    "Play of the Month",
    "ITV Playhouse",
    "Screen Two",
    "Sunday Night Theatre",
)
_FOREIGN_TITLES = (
    "Le Grand Voyage",
    "La Nuit américaine",
    "Les Enfants du paradis",
    "Cité des enfants perdus, La",
    "Vie en rose, La",
    "Fabuleux destin, Le",
    "Das Boot ist voll",
    "Die Brücke am Fluss",
    "Mädchen in Uniform",
    "Der Himmel über Berlin",
    "Laberinto del fauno, El",
    "Los Niños del sol",
    "Mañana será otro día",
    "Il Postino d'inverno",
    "Vita è bella, La",
    "Kôkaku kidôtai",
    "Ōkami no kodomo",
    "Sen to Chihiro",
    "Yōkai daisensō",
    "Tōkyō monogatari",
    "Smultronstället",
    "Fanny och Alexander",
    "Østen for solen",
    "Tystnaden",
    "Солярис",
    "Летят журавли",
    "Иди и смотри",
    "Брат",
    "千と千尋の神隠し",
    "東京物語",
    "花样年华",
    "卧虎藏龙",
    "올드보이",
    "Amores perros",
    "Fúsi",
    "Héroes del silencio",
    "Tiempo de valientes",
    "Cão sem dono",
    "Kış uykusu",
    "Nuovo mondo",
    "Jeux interdits",
    "Ladri di biciclette",
    "Nosferatu, eine Symphonie des Grauens",
    "Øyevitne",
    "Złoty wiek",
    "Żywot Mateusza",
    "Dívka na koštěti",
    "Ζορμπάς",
    "Ha-Sippur Shel",
    "Lumière d'été",
)
_GENRES: tuple[tuple[str, float], ...] = (
    ("Action", 0.15), ("Adventure", 0.09), ("Animation", 0.05), ("Children", 0.05), ("Comedy", 0.31), ("Crime", 0.10),
    ("Documentary", 0.06), ("Drama", 0.42), ("Fantasy", 0.06), ("Film-Noir", 0.005), ("Horror", 0.10), ("IMAX", 0.01),
    ("Musical", 0.02), ("Mystery", 0.05), ("Romance", 0.14), ("Sci-Fi", 0.07), ("Thriller", 0.15), ("War", 0.03),
    ("Western", 0.02),
)  # fmt: skip
NO_GENRES = "(no genres listed)"

_USER_TAGS = (
    "atmospheric",
    "funny",
    "thought-provoking",
    "sci-fi",
    "dark comedy",
    "twist ending",
    "surreal",
    "visually appealing",
    "superhero",
    "Disney",
    '"artsy"',
    "In Netflix queue",
    "classic",
    "quirky",
    "dark, gritty",
    "based on a book",
    "psychology",
    "Amélie-esque",
    "religion",
    "BD-R",
    "politics",
    "animation",
    "cinematography",
    "über-cool",
    "dystopia",
    "time travel",
    "romance",
    "Miyazaki (宮崎駿)",
    "boring",
    "overrated",
    "action",
    "great soundtrack",
    "slow, but worth it",
    "stylized",
    "violence",
    "Тарковский",
    "Oscar (Best Picture)",
    "nonlinear",
    "so bad it's good",
    "space",
    "aliens",
    "Almodóvar",
    'film "noir"',
    "World War II",
    "adolescence",
    "Kurosawa, Akira",
    "true story",
    "music",
    "heist",
    "déjà vu",
    "satire",
    "social commentary",
    "naïve",
    "netflix",
    "mystery",
    "comic book",
    "revenge",
    "tearjerker",
    "family",
    "Pixar",
    "funny, sad",
    "cult film",
    "Björk",
    "beautiful",
    "quotable",
    "predictable",
    "feel-good",
    "Christopher Nolan",
    "Hitchcock",
    "biography",
    "documentary",
    "mafia",
    "serial killer",
    "war",
    "high school",
    "zombies",
    "vampires",
    "witty",
    "bittersweet",
    "coming of age",
    "philosophical",
    "post-apocalyptic",
    "cyberpunk",
    "anime",
    "remake",
    "sequel",
    "courtroom",
    "espionage",
    "español",
    "Studio Ghibli",
    "Pedro Almodóvar",
    "Zoë Kazan",
    "crude humor",
    "slow",
    "long",
    "underrated",
    "gory",
    "must see",
    "seen more than once",
    "in theaters",
    "watched on DVD",
    "to see",
    "meh",
    "2.5 stars",
    "Criterion",
    "black and white",
    "subtitled",
    "silent film",
    "musical",
    "New York City",
    "Paris",
    "Tokyo",
    "Los Angeles",
    "road trip",
    "prison",
    "hospital",
    "chess",
    "baseball",
    "boxing",
    "sports",
    "cars",
    "trains",
    "robots",
    "AI",
    "dinosaurs",
    "dragons",
    "magic",
    "pirates",
    "ninjas",
    "cowboys",
    "samurai",
    "spies",
)

_GENOME_BASE = (
    "007", "007 (series)", "18th century", "19th century", "1920s", "1930s", "1940s", "1950s", "1960s", "1970s",
    "1980s", "1990s", "2000s", "2010s", "absurd", "abortion", "action", "action packed", "adaptation",
    "adapted from:book", "adapted from:comic", "adapted from:game", "addiction", "adolescence", "adventure",
    "afterlife", "aging", "aliens", "allegory", "alternate history", "amazing cinematography", "animal movie",
    "animated", "anime", "anti-hero", "anti-war", "apocalypse", "archaeology", "art", "art house",
    "artificial intelligence", "assassination", "astronauts", "atmospheric", "australia", "author:neil gaiman",
    "autism", "bad acting", "bad ending", "bank robbery", "based on a book", "based on a comic", "based on a play",
    "based on a true story", "batman", "beautiful scenery", "biographical", "biopic", "black comedy", "blaxploitation",
    "bleak", "bollywood", "boxing", "brainwashing", "british", "brutality", "buddy movie", "bullying", "california",
    "cannibalism", "car chase", "cartoon", "catastrophe", "cerebral", "chase", "cheating", "childhood", "china",
    "christmas", "cia", "cinematography", "circus", "civil war", "classic", "claustrophobic", "clever", "college",
    "comedy", "comic book", "coming of age", "conspiracy", "corruption", "courtroom", "crime", "criterion",
    "cult classic", "cult film", "cyberpunk", "dance", "dark", "dark comedy", "dark fantasy", "dark hero", "death",
    "demons", "depressing", "desert", "destiny", "detective", "dialogue", "dinosaurs", "disaster", "disney", "divorce",
    "documentary", "dogs", "drama", "dreamlike", "drugs", "dystopia", "earnest", "eccentricity", "enigmatic",
    "entertaining", "epic", "espionage", "existentialism", "exotic", "fairy tale", "family", "fantasy",
    "father son relationship", "feel-good", "femme fatale", "film noir", "first contact", "flashbacks", "football",
    "france", "friendship", "funny", "future", "gangsters", "genetics", "germany", "ghosts", "gothic", "great ending",
    "great soundtrack", "gritty", "gunfight", "hackers", "haunted house", "heist", "high school", "historical",
    "history", "hitman", "hollywood", "horror", "hospital", "humorous", "identity", "imdb top 250", "immortality",
    "independent film", "india", "insanity", "inspirational", "intense", "investigation", "irish", "islam", "italy",
    "japan", "jazz", "journalism", "kidnapping", "kids", "king arthur", "kung fu", "lawyers", "lone hero",
    "loneliness", "love", "love story", "mafia", "magic", "marriage", "martial arts", "mathematics", "medieval",
    "melancholic", "memory loss", "mental illness", "mexico", "military", "mindfuck", "monster", "moody", "motorcycle",
    "murder", "music", "musical", "mystery", "mythology", "native americans", "nature", "nazis", "new york city",
    "ninja", "noir", "nonlinear", "nostalgic", "nuclear war", "obsession", "oscar (best picture)", "paranoia",
    "parody", "philosophical", "pirates", "pixar", "plot twist", "poetry", "police", "politics", "post-apocalyptic",
    "predictable", "prison", "prostitution", "psychedelic", "psychological", "quirky", "race issues", "rape",
    "realistic", "religion", "remake", "revenge", "road movie", "robots", "romance", "romantic comedy", "russia",
    "samurai", "satire", "school", "sci-fi", "science", "serial killer", "sex", "sexuality", "shakespeare", "short",
    "silent", "slapstick", "slasher", "slow", "small town", "social commentary", "space", "spies", "sports", "spy",
    "stand-up comedy", "storytelling", "stylized", "submarine", "suicide", "superhero", "supernatural", "surreal",
    "survival", "suspense", "teacher", "technology", "teen", "terrorism", "thought-provoking", "thriller",
    "time travel", "torture", "tragedy", "trains", "treasure hunt", "true story", "twist ending", "underdog",
    "unusual plot structure", "utopia", "vampires", "vengeance", "video game", "vietnam", "violence",
    "virtual reality", "visually appealing", "visually stunning", "war", "wedding", "weird", "werewolves", "western",
    "witches", "world war i", "world war ii", "writers", "zombies",
)  # fmt: skip
_GENOME_ADJECTIVES = (
    "great",
    "good",
    "bad",
    "dark",
    "weird",
    "beautiful",
    "original",
    "clever",
    "slow",
    "violent",
    "quirky",
    "strong",
    "stylish",
    "intense",
    "funny",
    "sad",
    "complex",
    "realistic",
    "memorable",
    "excellent",
    "tense",
    "witty",
    "atmospheric",
    "brilliant",
    "poor",
    "cheesy",
    "touching",
    "imaginative",
    "bleak",
    "epic",
)
_GENOME_NOUNS = (
    "acting",
    "dialogue",
    "soundtrack",
    "plot",
    "ending",
    "visuals",
    "cinematography",
    "characters",
    "story",
    "script",
    "humor",
    "action",
    "music",
    "effects",
    "atmosphere",
    "twist",
    "cast",
    "romance",
    "villain",
    "setting",
    "score",
    "direction",
    "pacing",
    "characterization",
    "photography",
    "writing",
    "premise",
    "storyline",
    "world",
    "heroine",
)


def genome_tags() -> list[str]:
    """The 1,128 genome tags, sorted the way MovieLens sorts them; the same for every seed."""
    tags = dict.fromkeys(_GENOME_BASE)
    for noun in _GENOME_NOUNS:
        for adj in _GENOME_ADJECTIVES:
            if len(tags) >= GENOME_TAG_COUNT:
                break
            tags.setdefault(f"{adj} {noun}")
    return sorted(tags)[:GENOME_TAG_COUNT]


def _tag_vocabulary() -> list[str]:
    """Free-text tags users apply, most common first."""
    return list(dict.fromkeys([*_USER_TAGS, *genome_tags()]))


# --------------------------------------------------------------------------------------------------------------------
# The world: dimension tables built with NumPy
# --------------------------------------------------------------------------------------------------------------------

_SALT_MOVIES = 1
_SALT_USERS = 2
_SALT_TAGGERS = 3
_SALT_DAILY = 4


def _epoch(day: dt.date) -> int:
    return calendar.timegm(day.timetuple())


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, *salt])


def _allocate(total: int, weights: FloatArray, floor: int, caps: IntArray) -> IntArray:
    """Integers n with sum(n) == total, floor <= n <= caps, roughly proportional to weights (water-filling)."""
    caps = np.asarray(caps, dtype=np.int64)
    size = len(weights)
    if size == 0:
        if total:
            raise ValueError(f"cannot place {total:,} rows on nobody")
        return np.zeros(0, dtype=np.int64)
    extra = total - floor * size
    room = caps - floor
    if extra < 0 or (room < 0).any() or int(room.sum()) < extra:
        raise ValueError(
            f"cannot place {total:,} rows on {size:,} owners with at least {floor} and at most "
            f"{int(caps.sum()):,} in total; choose a larger scale or fewer ratings"
        )
    share = np.zeros(size, dtype=np.float64)
    free = room > 0
    left = float(extra)
    while free.any() and left > 0:
        lam = left / float(weights[free].sum())
        want = lam * weights
        full = free & (want >= room)
        if not full.any():
            share[free] = want[free]
            break
        share[full] = room[full]
        left -= float(room[full].sum())
        free &= ~full
    n = np.minimum(np.floor(share).astype(np.int64), room)
    short = extra - int(n.sum())
    if short > 0:
        frac = np.where(n < room, share - n, -1.0)
        order = np.lexsort((np.arange(size), -frac))
        take = order[:short]
        n[take] += 1
    result: IntArray = n + floor
    if int(result.sum()) != total or (result > caps).any():
        raise RuntimeError("allocation failed to meet its bounds")
    return result


def _coprime_steps(reach: IntArray, rng: np.random.Generator) -> IntArray:
    """A step a_u coprime to each reach K_u, near an irrational fraction of K_u so picks spread over the range."""
    fractions = np.array([0.6180339887, 0.4142135624, 0.7320508076, 0.2360679775, 0.5857864376, 0.3819660113])
    frac = fractions[rng.integers(0, len(fractions), len(reach))]
    steps = np.maximum(1, np.floor(reach * frac)).astype(np.int64)
    steps = np.where(reach <= 1, 1, steps)
    while True:
        bad = np.gcd(steps, np.maximum(reach, 1)) != 1
        if not bad.any():
            return steps
        steps[bad] += 1


def _reach(
    n: IntArray, pool: IntArray, rng: np.random.Generator, median_factor: float, spread: float, explorers: float
) -> IntArray:
    """How deep into the popularity ranking each owner reaches: >= n, <= pool, skewed.

    A share of explorers reach the whole pool; they carry most of the long tail.
    """
    factor = 1.0 + median_factor * np.exp(spread * rng.standard_normal(len(n)))
    deep = np.minimum(n * factor, np.iinfo(np.int64).max / 4)
    reach: IntArray = np.minimum(pool, np.maximum(n, np.ceil(deep))).astype(np.int64)
    return np.where(rng.random(len(n)) < explorers, np.maximum(pool, n), reach)


@dataclass
class _World:
    """The snapshot's dimensions: everything the fact files are derived from."""

    scale: Scale
    seed: int
    t0: int  # first second of the snapshot
    t1: int  # last second of the snapshot
    movies: dict[str, Any]
    users: dict[str, Any]
    taggers: dict[str, Any]
    era_sizes: IntArray  # movies available at the start of each era
    popularity_order: IntArray  # movie indexes, most popular first

    @property
    def max_movie_id(self) -> int:
        return int(self.movies["movieId"][-1])


def _build_world(scale: Scale, seed: int, start: dt.date, end: dt.date) -> _World:
    if end <= start:
        raise ValueError(f"the snapshot must end after it starts: {start} .. {end}")
    t0, t1 = _epoch(start), _epoch(end + dt.timedelta(days=1)) - 1
    movies = _build_movies(scale, seed, t0, t1)
    era_starts = t0 + np.floor(np.arange(_ERAS) * ((t1 - t0) / _ERAS)).astype(np.int64)
    era_sizes = np.searchsorted(movies["added"], era_starts, side="right").astype(np.int64)
    order = np.lexsort((np.arange(scale.movies), -movies["popularity"])).astype(np.int64)
    users = _build_users(scale, seed, t0, t1, era_starts, era_sizes, int(movies["launch"]))
    taggers = _build_taggers(scale, seed, t1, users, era_sizes)
    return _World(scale, seed, t0, t1, movies, users, taggers, era_sizes, order)


def _build_movies(scale: Scale, seed: int, t0: int, t1: int) -> dict[str, Any]:
    rng = _rng(seed, _SALT_MOVIES)
    m = scale.movies
    idx = np.arange(m, dtype=np.int64)
    mean_gap = max(1.0, scale.max_movie_id / m)
    gaps = rng.geometric(1.0 / mean_gap, m).astype(np.int64)
    gaps[0] = 1
    movie_id = np.cumsum(gaps)

    per_user = scale.ratings / scale.users
    launch = min(m, max(math.ceil(_LAUNCH_SHARE * m), 3 * _MIN_RATINGS_PER_USER, math.ceil(1.5 * per_user)))
    later = np.clip((idx - launch + 1) / max(1, m - launch + 1), 0.0, 1.0)
    added = np.where(idx < launch, t0, t0 + np.floor(np.sqrt(later) * (t1 - t0) * 0.995)).astype(np.int64)

    added_year = added.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    launch_year = added_year - 1 - np.floor(rng.exponential(9.0, m)).astype(np.int64)
    recent = added_year - np.floor(rng.exponential(1.2, m)).astype(np.int64)
    old = added_year - np.floor(rng.exponential(25.0, m)).astype(np.int64)
    year = np.where(idx < launch, launch_year, np.where(rng.random(m) < 0.15, old, recent))
    year = np.clip(year, 1902, added_year)
    has_year = rng.random(m) >= 0.006

    popularity = rng.standard_normal(m) + np.where(idx < launch, 0.6, 0.0)
    quality = 0.08 * popularity + 0.34 * rng.standard_normal(m)

    by_release = np.lexsort((rng.random(m), year))
    imdb = np.empty(m, dtype=np.int64)
    imdb[by_release] = 10_000 + np.cumsum(1 + rng.integers(0, max(1, 2 * (_IMDB_DAILY_BASE - 200_000) // m - 1), m))
    tmdb = np.empty(m, dtype=np.int64)
    tmdb[by_release] = np.cumsum(1 + rng.integers(0, max(1, 2 * (_TMDB_DAILY_BASE - 100_000) // m - 1), m))
    tmdb_known = rng.random(m) >= 0.006
    return {
        "idx": idx,
        "movieId": movie_id,
        "added": added,
        "year": year,
        "has_year": has_year,
        "popularity": popularity,
        "quality": quality,
        "imdb": imdb,
        "tmdb": tmdb,
        "tmdb_known": tmdb_known,
        "launch": launch,
    }


def _build_users(
    scale: Scale, seed: int, t0: int, t1: int, era_starts: IntArray, era_sizes: IntArray, launch: int
) -> dict[str, Any]:
    rng = _rng(seed, _SALT_USERS)
    u = scale.users
    floor = min(_MIN_RATINGS_PER_USER, scale.ratings // u, launch)
    weights = np.exp(1.25 * rng.standard_normal(u))
    estimate = floor + (scale.ratings - floor * u) * weights / weights.sum()

    part, pos = rng.random(u), rng.random(u)
    tau = np.where(part < 0.35, 0.18 * pos, np.where(part < 0.6, 0.18 + 0.5 * pos, 0.68 + 0.32 * pos))
    first = t0 + np.floor(tau * (t1 - t0)).astype(np.int64)
    session = rng.random(u) < 0.55
    session_span = estimate * np.exp(np.log(30.0) + 0.6 * rng.standard_normal(u))
    long_span = 86_400.0 * np.exp(np.log(60.0) + 1.7 * rng.standard_normal(u))
    span = np.floor(np.minimum(np.where(session, session_span, long_span), t1 - t0)).astype(np.int64)
    last = np.minimum(first + span, t1)
    era = np.clip((last - t0) * _ERAS // (t1 - t0 + 1), 0, _ERAS - 1).astype(np.int64)
    pool = era_sizes[era]

    n = _allocate(scale.ratings, weights, floor, pool)
    explorers = min(0.2, 4.0 * scale.movies / scale.ratings)
    reach = _reach(n, pool, rng, median_factor=2.0, spread=2.0, explorers=explorers)
    return {
        "userId": np.arange(1, u + 1, dtype=np.int64),
        "n": n,
        "reach": reach,
        "step": _coprime_steps(reach, rng),
        "shift": np.floor(rng.random(u) * reach).astype(np.int64),
        "era": era,
        "first_ts": first,
        "last_ts": last,
        "bias": 0.35 * rng.standard_normal(u),
        "half": rng.random(u) >= 0.15,
    }


def _build_taggers(scale: Scale, seed: int, t1: int, users: dict[str, Any], era_sizes: IntArray) -> dict[str, Any]:
    """A subset of users who tag, how many tags each applies, and to how deep a ranking of movies."""
    rng = _rng(seed, _SALT_TAGGERS)
    tag_from = min(max(_epoch(TAGGING_FROM), int(users["first_ts"].min())), t1)
    eligible = np.flatnonzero(users["last_ts"] >= tag_from)
    if len(eligible) == 0:
        eligible = np.arange(scale.users)
    count = min(len(eligible), scale.tags, max(1, round(scale.users * 0.095)))
    p = np.sqrt(users["n"][eligible].astype(np.float64))
    chosen = np.sort(rng.choice(eligible, size=count, replace=False, p=p / p.sum())) if count else eligible[:0]

    hi = users["last_ts"][chosen]
    lo = np.where(hi >= tag_from, np.maximum(users["first_ts"][chosen], tag_from), users["first_ts"][chosen])
    per_movie = rng.choice(np.array([1, 2, 3, 4], dtype=np.int64), size=count, p=[0.55, 0.25, 0.12, 0.08])
    per_movie = np.where(hi - lo < 60, 1, per_movie).astype(np.int64)
    era = users["era"][chosen]
    pool = era_sizes[era]
    weights = rng.pareto(0.9, count) + 1.0
    n = _allocate(scale.tags, weights, 1 if count else 0, pool * per_movie)
    groups = -(-n // per_movie)
    reach = _reach(groups, pool, rng, median_factor=2.0, spread=1.5, explorers=0.2)
    return {
        "index": chosen,
        "weights": weights,
        "userId": users["userId"][chosen],
        "n": n,
        "per_movie": per_movie,
        "reach": reach,
        "step": _coprime_steps(reach, rng),
        "shift": np.floor(rng.random(count) * reach).astype(np.int64),
        "era": era,
        "lo": lo,
        "hi": hi,
    }


# --------------------------------------------------------------------------------------------------------------------
# DuckDB
# --------------------------------------------------------------------------------------------------------------------


def _connect(tmp_dir: Path, threads: int, memory_limit: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        ":memory:",
        config={
            "threads": threads,
            "memory_limit": memory_limit,
            "temp_directory": str(tmp_dir),
            "preserve_insertion_order": True,
        },
    )
    con.execute(
        "CREATE MACRO rnd(a, b) AS hash(hash(a, b)), (a, b, c) AS hash(hash(a, b, c)),"
        " (a, b, c, d) AS hash(hash(a, b, c, d)), (a, b, c, d, e) AS hash(hash(a, b, c, d, e)),"
        " (a, b, c, d, e, f) AS hash(hash(a, b, c, d, e, f))"
    )
    con.execute("CREATE MACRO u01(h) AS (h >> 11)::DOUBLE * 1.1102230246251565e-16")
    con.execute(
        "CREATE MACRO nrm(h) AS (((h & 65535) + ((h >> 16) & 65535) + ((h >> 32) & 65535) + (h >> 48))::DOUBLE"
        " * 1.52587890625e-05 - 2.0) * 1.7320508075688772"
    )
    con.execute("CREATE MACRO pick(lst, h) AS lst[1 + (h % len(lst))::BIGINT]")
    con.execute(
        "CREATE TABLE words AS SELECT $adj::VARCHAR[] AS adj, $noun::VARCHAR[] AS noun, $name::VARCHAR[] AS name,"
        " $surname::VARCHAR[] AS surname, $nick::VARCHAR[] AS nick, $place::VARCHAR[] AS place,"
        " $series::VARCHAR[] AS series, $foreign::VARCHAR[] AS foreign_title,"
        " $genres::VARCHAR[] AS genres",
        {
            "adj": list(_ADJECTIVES),
            "noun": list(_NOUNS),
            "name": list(_NAMES),
            "surname": list(_SURNAMES),
            "nick": list(_NICKNAMES),
            "place": list(_PLACES),
            "series": list(_SERIES),
            "foreign": list(_FOREIGN_TITLES),
            "genres": [g for g, _ in _GENRES],
        },
    )
    vocab = _tag_vocabulary()
    con.execute(
        "CREATE TABLE tag_vocab AS SELECT unnest(range(len($tags::VARCHAR[]))) AS i, unnest($tags::VARCHAR[]) AS tag",
        {"tags": vocab},
    )
    con.execute(
        "CREATE TABLE genre_odds AS SELECT unnest($names::VARCHAR[]) AS genre, unnest($odds::DOUBLE[]) AS odds,"
        " unnest(range(len($names::VARCHAR[]))) AS salt",
        {"names": [g for g, _ in _GENRES], "odds": [p for _, p in _GENRES]},
    )
    return con


def _load(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, Any]) -> None:
    table = pa.table({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in columns.items()})
    con.register(f"{name}_arrow", table)
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


def _rating_sql(seed: int, half_from: int, mean: str, key: str) -> str:
    """SQL for one rating: a noisy score around `mean`, now and then much lower (a disappointment), rounded.

    Rounds to half stars from half_from on for users who use them, else to whole stars. Expects columns ts (the
    rating's time) and half (whether the user uses half stars).
    """
    noise = f"nrm(rnd({seed}, {key}, 11))"
    drop = f"u01(rnd({seed}, {key}, 12))"
    score = f"({mean} + {_RATING_SPREAD} * {noise} - CASE WHEN {drop} < 0.2 THEN 15.0 * {drop} ELSE 0 END)"
    return (
        f"CAST(CASE WHEN ts >= {half_from} AND half THEN least(10, greatest(1, round(2 * {score})))"
        f" ELSE 2 * least(5, greatest(1, round({score}))) END / 2.0 AS DECIMAL(2,1))"
    )


def _tag_pick_sql(seed: int, key: str) -> str:
    """SQL for a tag pick: a hash whose low bits choose the capitalisation and whose high bits the vocabulary entry."""
    return f"rnd({seed}, {key}, 21)"


def _tag_text_sql(pick: str, vocab_size: int) -> tuple[str, str]:
    """Join condition on tag_vocab v and the tag text, Zipf-like over the vocabulary, for a pick hash column."""
    join = f"v.i = CAST(floor({vocab_size} * pow(u01({pick}), 2)) AS BIGINT)"
    text = f"CASE WHEN ({pick} & 1023) < 40 THEN upper(left(v.tag, 1)) || substr(v.tag, 2) ELSE v.tag END"
    return join, text


def _movie_text_sql(seed: int, source: str) -> str:
    """SELECT idx, title, genres for the movies in `source` (columns idx, year, has_year, added_share)."""
    s = seed
    return f"""
    WITH b AS (
      SELECT m.idx, m.year, m.has_year, m.added_share,
        u01(rnd({s}, m.idx, 101)) AS p_pat, u01(rnd({s}, m.idx, 102)) AS p_art, u01(rnd({s}, m.idx, 103)) AS p_alt,
        pick(w.adj, rnd({s}, m.idx, 111)) AS adj, pick(w.adj, rnd({s}, m.idx, 112)) AS adj2,
        pick(w.noun, rnd({s}, m.idx, 113)) AS n1, pick(w.noun, rnd({s}, m.idx, 114)) AS n2,
        pick(w.noun, rnd({s}, m.idx, 115)) AS n3, pick(w.name, rnd({s}, m.idx, 116)) AS name,
        pick(w.surname, rnd({s}, m.idx, 117)) AS surname, pick(w.nick, rnd({s}, m.idx, 118)) AS nick,
        pick(w.place, rnd({s}, m.idx, 119)) AS place, pick(w.series, rnd({s}, m.idx, 120)) AS series,
        pick(w.foreign_title, rnd({s}, m.idx, 121)) AS foreign_title,
        pick(['2', '3', '4', 'II', 'III'], rnd({s}, m.idx, 122)) AS sequel,
        pick(['Goodbye', 'Hello', 'Farewell', 'Run', 'Remember Me'], rnd({s}, m.idx, 123)) AS greeting
      FROM {source} m, words w
    ), p AS (
      SELECT *,
        CASE
          WHEN p_pat < 0.29 THEN adj || ' ' || n1
          WHEN p_pat < 0.43 THEN n1 || ' of the ' || n2
          WHEN p_pat < 0.52 THEN name || '''s ' || n1
          WHEN p_pat < 0.63 THEN n1
          WHEN p_pat < 0.71 THEN n1 || ': ' || adj || ' ' || n2
          WHEN p_pat < 0.78 THEN adj || ' ' || n1 || ' ' || sequel
          WHEN p_pat < 0.84 THEN place || ' ' || n1
          WHEN p_pat < 0.87 THEN n1 || ', ' || n2 || ' and ' || n3
          WHEN p_pat < 0.89 THEN greeting || ', ' || name || '!'
          WHEN p_pat < 0.895 THEN '"' || series || '" ' || n1
          WHEN p_pat < 0.90 THEN name || ' "' || nick || '" ' || surname
          WHEN p_pat < 0.92 THEN foreign_title
          ELSE name || ' ' || surname
        END AS base,
        p_pat < 0.84 AS can_article
      FROM b
    ), g AS (
      SELECT p.idx, string_agg(o.genre, '|' ORDER BY o.genre) AS genres
      FROM p JOIN genre_odds o ON u01(rnd({s}, p.idx, 200 + o.salt)) < o.odds AND (o.genre <> 'IMAX' OR p.year >= 1990)
      GROUP BY p.idx
    )
    SELECT p.idx,
      CASE
        WHEN can_article AND p_art < 0.12 THEN base || ', The'
        WHEN can_article AND p_art < 0.17
          THEN base || CASE WHEN left(base, 1) IN ('A', 'E', 'I', 'O', 'U') THEN ', An' ELSE ', A' END
        ELSE base
      END
      || CASE WHEN p_alt < 0.06 THEN ' (' || foreign_title || ')'
              WHEN p_alt < 0.08 THEN ' (a.k.a. ' || adj2 || ' ' || n3 || ')' ELSE '' END
      || CASE WHEN has_year THEN ' (' || year || ')' ELSE '' END AS title,
      coalesce(
        g.genres,
        CASE WHEN u01(rnd({s}, p.idx, 199)) < 0.01 + 0.3 * added_share * added_share THEN '{NO_GENRES}'
             WHEN u01(rnd({s}, p.idx, 198)) < 0.5 THEN 'Drama' ELSE 'Comedy' END
      ) AS genres
    FROM p LEFT JOIN g USING (idx)
    """


def _load_movies(con: duckdb.DuckDBPyConnection, world: _World) -> None:
    """Table movies(idx, movieId, title, genres, imdb, tmdb) of the snapshot's catalogue."""
    mv = world.movies
    _load(
        con,
        "movie_src",
        {
            "idx": mv["idx"],
            "year": mv["year"],
            "has_year": mv["has_year"],
            "added_share": (mv["added"] - world.t0) / max(1, world.t1 - world.t0),
            "movieId": mv["movieId"],
            "imdb": mv["imdb"],
            "tmdb": pa.array(mv["tmdb"], mask=~mv["tmdb_known"]),
        },
    )
    con.execute(
        f"CREATE TABLE movies AS SELECT s.idx, s.movieId, t.title, t.genres, s.imdb, s.tmdb"
        f" FROM movie_src s JOIN ({_movie_text_sql(world.seed, 'movie_src')}) t USING (idx)"
    )
    con.execute("DROP TABLE movie_src")


def _load_era_rank(con: duckdb.DuckDBPyConnection, world: _World) -> None:
    """Table era_rank: key = era * movies + popularity rank among the movies available in that era."""
    mv, order = world.movies, world.popularity_order
    m = world.scale.movies
    parts = [order[order < size] for size in world.era_sizes]
    chosen = np.concatenate(parts)
    key = np.concatenate([k * m + np.arange(len(p), dtype=np.int64) for k, p in enumerate(parts)])
    _load(
        con,
        "era_rank",
        {"key": key, "movieId": mv["movieId"][chosen], "added": mv["added"][chosen], "quality": mv["quality"][chosen]},
    )


# --------------------------------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------------------------------


def _file_name(dataset: str, day: dt.date | None, gzip: bool) -> str:
    stamp = "" if day is None else f"_{day:%Y%m%d}"
    return f"{dataset}{stamp}.csv" + (".gz" if gzip else "")


def _write(
    con: duckdb.DuckDBPyConnection,
    query: str,
    out_dir: Path,
    dataset: str,
    day: dt.date | None,
    gzip: bool,
    progress: Callable[[FileResult], None] | None,
) -> FileResult:
    """COPY the query's rows to the dataset's file under its contract header; the file appears only when complete."""
    began = time.perf_counter()
    name = _file_name(dataset, day, gzip)
    matched = contracts.match_file_name(name)
    if matched is None or matched.contract.dataset != dataset:
        raise RuntimeError(f"{name} does not match the file contracts")
    contract = matched.contract
    final = out_dir / name
    partial = out_dir / f".{name}.partial"
    columns = ", ".join(f'"{h}"' for h in contract.header)
    compression = "gzip" if gzip else "none"
    try:
        row = con.execute(
            f"COPY (SELECT * FROM ({query}) q({columns})) TO '{partial}' (FORMAT csv, HEADER true, DELIMITER ',',"
            f" QUOTE '\"', ESCAPE '\"', NEW_LINE '\\n', COMPRESSION '{compression}')"
        ).fetchone()
        opener: Callable[..., Any] = gzip_module.open if gzip else open
        with opener(partial, "rt", encoding="utf-8", newline="") as f:
            contracts.check_header(name, contract, f.readline())
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)
    rows = int(row[0]) if row else 0
    result = FileResult(dataset, final, rows, final.stat().st_size, time.perf_counter() - began)
    if progress is not None:
        progress(result)
    return result


class _Session:
    """A DuckDB connection with a temp directory under the output folder, removed afterwards."""

    def __init__(self, out_dir: Path, threads: int, memory_limit: str) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=".generate-tmp-", dir=out_dir))
        self.con = _connect(self.tmp, threads, memory_limit)

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def __exit__(self, *exc: object) -> None:
        self.con.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------------
# Snapshot
# --------------------------------------------------------------------------------------------------------------------


def generate(
    out_dir: str | Path,
    scale: str | Scale = "small",
    seed: int = 42,
    *,
    ratings: int | None = None,
    gzip: bool = False,
    start_date: dt.date = DEFAULT_START,
    end_date: dt.date = DEFAULT_END,
    threads: int = 2,
    memory_limit: str = "2GB",
    progress: Callable[[FileResult], None] | None = None,
) -> GenerateResult:
    """Write the six snapshot files (movies, ratings, tags, links, genome-scores, genome-tags) into out_dir.

    `scale` is a preset name or a Scale; `ratings` resizes it. Ratings run from start_date to end_date (UTC).
    """
    began = time.perf_counter()
    size = resolve_scale(scale, ratings)
    _check_seed(seed)
    out = Path(out_dir)
    world = _build_world(size, seed, start_date, end_date)
    s, m = seed, size.movies
    files: list[FileResult] = []
    with _Session(out, threads, memory_limit) as con:

        def write(dataset: str, query: str) -> None:
            files.append(_write(con, query, out, dataset, None, gzip, progress))

        _load_movies(con, world)
        write("movies", "SELECT movieId, title, genres FROM movies ORDER BY movieId")
        write("links", "SELECT movieId, lpad(imdb::VARCHAR, 7, '0'), tmdb FROM movies ORDER BY movieId")
        con.execute("DROP TABLE movies")

        _load_era_rank(con, world)
        columns = ("userId", "n", "reach", "step", "shift", "era", "first_ts", "last_ts", "bias", "half")
        _load(con, "users", {k: world.users[k] for k in columns})
        rating = _rating_sql(s, _epoch(HALF_STARS_FROM), f"{_RATING_MEAN} + bias + quality", "userId, j")
        write(
            "ratings",
            f"""
            SELECT userId, movieId, {rating}, ts FROM (
              SELECT r.userId, r.j, r.bias, r.half, e.movieId, e.quality,
                greatest(r.first_ts, e.added) + CAST(floor((r.last_ts - greatest(r.first_ts, e.added) + 1)
                  * u01(rnd({s}, r.userId, r.j, 13))) AS BIGINT) AS ts
              FROM (SELECT userId, era, first_ts, last_ts, bias, half, j, (step * j + shift) % reach AS rk
                    FROM users, range(n) t(j)) r
              JOIN era_rank e ON e.key = r.era * {m} + r.rk
            ) ORDER BY userId, ts, movieId
            """,
        )
        tagger_columns = ("userId", "n", "per_movie", "reach", "step", "shift", "era", "lo", "hi")
        _load(con, "taggers", {k: world.taggers[k] for k in tagger_columns})
        tag_join, tag = _tag_text_sql("r.pick", len(_tag_vocabulary()))
        write(
            "tags",
            f"""
            SELECT userId, movieId, tag, ts FROM (
              SELECT r.userId, e.movieId, {tag} AS tag,
                least(
                  greatest(r.lo, e.added) + CAST(floor(greatest(0, r.hi - 2 * (r.per_movie - 1)
                    - greatest(r.lo, e.added) + 1) * u01(rnd({s}, r.userId, r.g, 31))) AS BIGINT),
                  r.hi - 2 * (r.per_movie - 1)
                ) + 2 * r.o AS ts
              FROM (SELECT userId, era, lo, hi, per_movie, j, j // per_movie AS g, j % per_movie AS o,
                           (step * (j // per_movie) + shift) % reach AS rk, {_tag_pick_sql(s, "userId, j")} AS pick
                    FROM taggers, range(n) t(j)) r
              JOIN era_rank e ON e.key = r.era * {m} + r.rk
              JOIN tag_vocab v ON {tag_join}
            ) ORDER BY userId, ts, movieId, tag
            """,
        )
        con.execute("DROP TABLE era_rank; DROP TABLE users; DROP TABLE taggers")

        genome = np.sort(world.movies["movieId"][world.popularity_order[: size.genome_movies]])
        _load(con, "genome_movies", {"movieId": genome})
        write("genome-scores", _genome_scores_sql(s))
        _load(con, "genome_tag_list", {"tagId": np.arange(1, GENOME_TAG_COUNT + 1), "tag": genome_tags()})
        write("genome-tags", "SELECT tagId, tag FROM genome_tag_list ORDER BY tagId")
    order = {d: i for i, d in enumerate(contracts.DATASETS)}
    files.sort(key=lambda f: order[f.dataset])
    return GenerateResult(out, size, seed, None, tuple(files), time.perf_counter() - began)


def _genome_scores_sql(seed: int) -> str:
    """Relevance in [0.00025, 1] in steps of 1/4000, mostly low: a product of 2 to 4 uniforms, sometimes high."""
    h = f"rnd({seed}, g.movieId, t.tagId, 41)"
    k = f"rnd({seed}, g.movieId, t.tagId, 42)"
    f1, f2, f3, f4 = (f"(({h} >> {b}) & 65535)::DOUBLE * 1.52587890625e-05" for b in (0, 16, 32, 48))
    shape = f"rnd({seed}, t.tagId, 43) % 3"
    value = (
        f"CASE WHEN u01({k}) < 0.03 THEN 0.55 + 0.45 * {f1}"
        f" WHEN {shape} = 0 THEN {f1} * {f2} WHEN {shape} = 1 THEN {f1} * {f2} * {f3}"
        f" ELSE {f1} * {f2} * {f3} * {f4} END"
    )
    return (
        f"SELECT g.movieId, t.tagId, greatest(1, least(4000, round(4000 * ({value})))) / 4000.0 AS relevance"
        f" FROM genome_movies g, range(1, {GENOME_TAG_COUNT + 1}) t(tagId) ORDER BY g.movieId, t.tagId"
    )


# --------------------------------------------------------------------------------------------------------------------
# Daily increments
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DailySizes:
    new_movies: int
    corrections: int
    new_users: int  # user ids reserved per day; fewer join when the day has very few ratings
    new_user_ratings: int
    tags: int


def _daily_sizes(scale: Scale, daily_ratings: int) -> _DailySizes:
    new_users = max(1, round(scale.users * 0.0005))
    return _DailySizes(
        new_movies=max(1, round(scale.movies * 0.0002)),
        corrections=min(scale.movies, max(2, round(scale.movies * 0.0001))),
        new_users=new_users,
        new_user_ratings=min(daily_ratings // 10 if daily_ratings >= 30 else daily_ratings // 3, new_users * 30),
        tags=round(daily_ratings * scale.tags / scale.ratings),
    )


def generate_daily(
    out_dir: str | Path,
    day: dt.date,
    scale: str | Scale = "small",
    seed: int = 42,
    *,
    ratings: int | None = None,
    daily_ratings: int | None = None,
    gzip: bool = False,
    start_date: dt.date = DEFAULT_START,
    end_date: dt.date = DEFAULT_END,
    threads: int = 2,
    memory_limit: str = "2GB",
    progress: Callable[[FileResult], None] | None = None,
) -> GenerateResult:
    """Write one day's increment files (ratings, tags, movies and links, named _YYYYMMDD) into out_dir.

    They continue the snapshot `generate` writes for the same scale, ratings, seed and dates, so the day must come
    after end_date. Ratings and tags fall within the day (UTC), mostly by existing users on existing movies, plus a
    few new users; movies_YYYYMMDD corrects a few existing movies and adds new ones with ids above the snapshot's,
    which the same day's ratings may already rate; links_YYYYMMDD has the new movies' links.
    """
    began = time.perf_counter()
    size = resolve_scale(scale, ratings)
    _check_seed(seed)
    if day <= end_date:
        raise ValueError(
            f"daily increments continue the snapshot, which ends on {end_date:%Y-%m-%d}; {day:%Y-%m-%d} is not "
            f"after that. Choose a day from {end_date + dt.timedelta(days=1):%Y-%m-%d} on."
        )
    per_day = size.default_daily_ratings if daily_ratings is None else daily_ratings
    if per_day < 0:
        raise ValueError(f"daily ratings must not be negative, got {per_day}")
    out = Path(out_dir)
    world = _build_world(size, seed, start_date, end_date)
    d = (day - end_date).days
    s, m = seed, size.movies
    sizes = _daily_sizes(size, per_day)
    rng = _rng(seed, _SALT_DAILY, d)
    day_start = _epoch(day)

    k = sizes.new_movies
    new_idx = m + (d - 1) * k + np.arange(k, dtype=np.int64)
    new_ids = world.max_movie_id + 1 + (d - 1) * k + np.arange(k, dtype=np.int64)
    order = world.popularity_order
    slots = np.sort(np.minimum(m, 10 + np.floor(min(m, 1_000) * rng.random(k) ** 2).astype(np.int64)))
    pool_ids = np.insert(world.movies["movieId"][order], slots, new_ids)
    pool_quality = np.insert(world.movies["quality"][order], slots, 0.34 * rng.standard_normal(k))
    pool = len(pool_ids)
    new_tmdb_unknown = rng.random(k) < 0.1
    new_year = np.where(rng.random(k) < 0.8, day.year, day.year - 1)
    fixed = np.sort(rng.choice(m, size=sizes.corrections, replace=False))
    fix_kind = rng.integers(0, 2, len(fixed))
    fix_genre = rng.integers(0, len(_GENRES), len(fixed))
    day_users = _daily_users(world, rng, d, per_day, sizes, pool)
    day_taggers = _daily_taggers(world, rng, sizes.tags, pool)

    files: list[FileResult] = []
    with _Session(out, threads, memory_limit) as con:

        def write(dataset: str, query: str) -> None:
            files.append(_write(con, query, out, dataset, day, gzip, progress))

        _load(con, "day_rank", {"rk": np.arange(pool, dtype=np.int64), "movieId": pool_ids, "quality": pool_quality})
        _load(con, "day_users", day_users)
        _load(con, "day_taggers", day_taggers)
        tag_join, tag = _tag_text_sql("r.pick", len(_tag_vocabulary()))
        rating = _rating_sql(s, _epoch(HALF_STARS_FROM), f"{_RATING_MEAN} + bias + quality", f"userId, j, {d}")
        write(
            "ratings",
            f"""
            SELECT userId, movieId, {rating}, ts FROM (
              SELECT r.userId, r.j, r.bias, r.half, p.movieId, p.quality,
                {day_start} + r.lo + CAST(floor((r.hi - r.lo + 1) * u01(rnd({s}, r.userId, r.j, {d}, 14))) AS BIGINT)
                  AS ts
              FROM (SELECT userId, lo, hi, bias, half, j, (step * j + shift) % reach AS rk
                    FROM day_users, range(n) t(j)) r
              JOIN day_rank p ON p.rk = r.rk
            ) ORDER BY userId, ts, movieId
            """,
        )
        write(
            "tags",
            f"""
            SELECT userId, movieId, tag, ts FROM (
              SELECT r.userId, p.movieId, {tag} AS tag,
                {day_start} + r.lo + CAST(floor((r.hi - r.lo - 2 * (r.per_movie - 1) + 1)
                  * u01(rnd({s}, r.userId, r.g, {d}, 32))) AS BIGINT) + 2 * r.o AS ts
              FROM (SELECT userId, lo, hi, per_movie, j, j // per_movie AS g, j % per_movie AS o,
                           (step * (j // per_movie) + shift) % reach AS rk,
                           {_tag_pick_sql(s, f"userId, j, {d}")} AS pick
                    FROM day_taggers, range(n) t(j)) r
              JOIN day_rank p ON p.rk = r.rk
              JOIN tag_vocab v ON {tag_join}
            ) ORDER BY userId, ts, movieId, tag
            """,
        )

        _load_movies(con, world)
        _load(
            con,
            "new_src",
            {
                "idx": new_idx,
                "year": new_year,
                "has_year": np.ones(k, dtype=bool),
                "added_share": np.ones(k),
                "movieId": new_ids,
                "imdb": _IMDB_DAILY_BASE + new_idx - m,
                "tmdb": pa.array(_TMDB_DAILY_BASE + new_idx - m, mask=new_tmdb_unknown),
            },
        )
        con.execute(
            f"CREATE TABLE new_movies AS SELECT s.idx, s.movieId, t.title, t.genres, s.imdb, s.tmdb"
            f" FROM new_src s JOIN ({_movie_text_sql(s, 'new_src')}) t USING (idx)"
        )
        _load(con, "fixed", {"idx": fixed, "kind": fix_kind, "genre": fix_genre})
        write("movies", _corrections_sql(s, d))
        write("links", "SELECT movieId, lpad(imdb::VARCHAR, 7, '0'), tmdb FROM new_movies ORDER BY movieId")
    return GenerateResult(out, size, seed, day, tuple(files), time.perf_counter() - began)


def _corrections_sql(seed: int, d: int) -> str:
    """Corrected rows of the movies in `fixed` and the rows of `new_movies`.

    A genre correction (kind 0) adds or removes one genre, a title correction (kind 1) adds an alternate title, or
    the year if the title had none.
    """
    s = seed
    title = f"""
      CASE WHEN regexp_matches(m.title, ' \\(\\d{{4}}\\)$')
        THEN regexp_replace(m.title, ' (\\(\\d{{4}}\\))$',
               ' (a.k.a. ' || pick(w.adj, rnd({s}, m.idx, {d}, 51)) || ' ' || pick(w.noun, rnd({s}, m.idx, {d}, 52))
               || ') \\1')
        ELSE m.title || ' (' || (1990 + rnd({s}, m.idx, {d}, 53) % 30) || ')' END"""
    genre = "w.genres[1 + f.genre]"
    other = f"w.genres[1 + (f.genre + 1) % {len(_GENRES)}]"
    listed = "string_split(m.genres, '|')"
    genres = f"""
      array_to_string(list_sort(CASE
        WHEN m.genres = '{NO_GENRES}' THEN [{genre}]
        WHEN list_contains({listed}, {genre}) AND len({listed}) > 1 THEN list_filter({listed}, lambda x: x <> {genre})
        WHEN list_contains({listed}, {genre}) THEN [{other}]
        ELSE list_append({listed}, {genre}) END), '|')"""
    return f"""
      SELECT movieId, title, genres FROM (
        SELECT m.movieId, CASE WHEN f.kind = 1 THEN {title} ELSE m.title END AS title,
               CASE WHEN f.kind = 0 THEN {genres} ELSE m.genres END AS genres
        FROM movies m JOIN fixed f USING (idx), words w
        UNION ALL
        SELECT movieId, title, genres FROM new_movies
      ) ORDER BY movieId
    """


def _sessions(rng: np.random.Generator, n: IntArray, min_span: IntArray) -> tuple[IntArray, IntArray]:
    """Second-of-day bounds [lo, hi] of each owner's session, long enough for n events, within the day."""
    span = np.floor(n * np.exp(np.log(30.0) + 0.6 * rng.standard_normal(len(n))))
    span = np.clip(np.maximum(span, min_span), 0, 86_399).astype(np.int64)
    lo = np.floor(rng.random(len(n)) * (86_400 - span)).astype(np.int64)
    return lo, lo + span


def _daily_users(
    world: _World, rng: np.random.Generator, d: int, per_day: int, sizes: _DailySizes, pool: int
) -> dict[str, Any]:
    """Users rating on day d: active existing users, plus new users with ids after the snapshot's."""
    u = world.users
    existing_ratings = per_day - sizes.new_user_ratings
    recency = (u["last_ts"] - world.t0) / max(1, world.t1 - world.t0)
    p = u["n"] ** 0.7 * (0.05 + recency**3)
    active_count = min(world.scale.users, max(1, round(existing_ratings / 12))) if existing_ratings else 0
    active = np.sort(rng.choice(world.scale.users, size=active_count, replace=False, p=p / p.sum()))
    caps = np.full(active_count, pool, dtype=np.int64)
    n_existing = _allocate(existing_ratings, np.exp(rng.standard_normal(active_count)), 1 if active_count else 0, caps)
    joined = min(sizes.new_users, sizes.new_user_ratings)
    caps = np.full(joined, pool, dtype=np.int64)
    n_new = _allocate(sizes.new_user_ratings, np.ones(joined), 1 if joined else 0, caps)
    first_new_user = world.scale.users + (d - 1) * sizes.new_users + 1
    user_id = np.concatenate([u["userId"][active], first_new_user + np.arange(joined, dtype=np.int64)])
    n = np.concatenate([n_existing, n_new]).astype(np.int64)
    bias = np.concatenate([u["bias"][active], 0.35 * rng.standard_normal(joined)])
    half = np.concatenate([u["half"][active], rng.random(joined) >= 0.15])
    reach = _reach(n, np.full(len(n), pool, dtype=np.int64), rng, median_factor=3.0, spread=1.6, explorers=0.1)
    lo, hi = _sessions(rng, n, n)
    return {
        "userId": user_id,
        "n": n,
        "reach": reach,
        "step": _coprime_steps(reach, rng),
        "shift": np.floor(rng.random(len(n)) * reach).astype(np.int64),
        "lo": lo,
        "hi": hi,
        "bias": bias,
        "half": half,
    }


def _daily_taggers(world: _World, rng: np.random.Generator, tag_count: int, pool: int) -> dict[str, Any]:
    """Taggers of the snapshot who tag on the day, and how many tags each applies."""
    t = world.taggers
    count = min(len(t["index"]), tag_count, max(1, round(tag_count / 6))) if tag_count else 0
    weights = t["weights"]
    chosen = (
        np.sort(rng.choice(len(weights), size=count, replace=False, p=weights / weights.sum()))
        if count
        else np.zeros(0, dtype=np.int64)
    )
    per_movie = t["per_movie"][chosen]
    n = _allocate(tag_count, weights[chosen], 1 if count else 0, per_movie * pool)
    groups = -(-n // per_movie)
    reach = _reach(groups, np.full(count, pool, dtype=np.int64), rng, median_factor=3.0, spread=1.5, explorers=0.1)
    lo, hi = _sessions(rng, n, 2 * per_movie)
    return {
        "userId": t["userId"][chosen],
        "n": n,
        "per_movie": per_movie,
        "reach": reach,
        "step": _coprime_steps(reach, rng),
        "shift": np.floor(rng.random(count) * reach).astype(np.int64),
        "lo": lo,
        "hi": hi,
    }


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a non-negative integer below 2**63, got {seed}")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


_PRESET_HELP = "; ".join(
    f"{s.name}: {s.ratings:,} ratings, {s.movies:,} movies, {s.users:,} users" for s in SCALES.values()
)

_DESCRIPTION = f"""\
Generate synthetic movie data in the exact MovieLens CSV format.

Without --daily/--days this writes a snapshot of six files: movies.csv, ratings.csv, tags.csv,
links.csv, genome-scores.csv and genome-tags.csv, with ratings from {DEFAULT_START} to {DEFAULT_END}
(see --end-date). With --daily (or --days) it writes only daily increment files that continue that
snapshot in time: ratings_YYYYMMDD.csv, tags_YYYYMMDD.csv, movies_YYYYMMDD.csv (corrections and new
movies) and links_YYYYMMDD.csv (links of the new movies).

The same seed, scale and dates always give byte-for-byte identical files."""

_EPILOG = """\
examples:
  %(prog)s --scale tiny --out data/tiny
  %(prog)s --scale ml-32m --gzip
  %(prog)s --scale small --ratings 5000 --seed 7
  %(prog)s --scale small --daily 2023-10-13 --days 7"""


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the `generate` subcommand; its func takes the parsed namespace and returns an exit code."""
    parser = subparsers.add_parser(
        "generate",
        help="write synthetic MovieLens-format files (a snapshot or daily increments)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/generated"),
        metavar="DIR",
        help="directory to write the files into, created if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--scale",
        choices=list(SCALES),
        default="small",
        help=f"size preset (default: %(default)s). {_PRESET_HELP}",
    )
    parser.add_argument(
        "--ratings",
        type=_positive,
        metavar="N",
        help="exact number of ratings instead of the preset's; movies, users, tags and genome are scaled in proportion",
    )
    parser.add_argument(
        "--seed", type=_non_negative, default=42, metavar="N", help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--daily",
        type=_date,
        metavar="YYYY-MM-DD",
        help="write daily increment files for this day (after the snapshot end) instead of a snapshot",
    )
    parser.add_argument(
        "--days",
        type=_positive,
        metavar="N",
        help="with --daily, write N consecutive days starting at that day; alone, start the day after the snapshot end",
    )
    parser.add_argument(
        "--daily-ratings",
        type=_non_negative,
        metavar="N",
        help=f"ratings per day in increment files (default: {DEFAULT_DAILY_SHARE * 100:g}%% of the snapshot's ratings)",
    )
    parser.add_argument(
        "--end-date",
        type=_date,
        default=DEFAULT_END,
        metavar="YYYY-MM-DD",
        help="last day of the snapshot (default: %(default)s); daily increments must use the same value",
    )
    parser.add_argument("--gzip", action="store_true", help="write .csv.gz instead of .csv")
    parser.add_argument(
        "--threads", type=_positive, default=2, metavar="N", help="DuckDB threads (default: %(default)s)"
    )
    parser.add_argument(
        "--memory-limit",
        default="2GB",
        metavar="SIZE",
        help="DuckDB memory limit; larger sorts spill to a temp folder under --out (default: %(default)s)",
    )
    parser.set_defaults(func=run_cli)
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Run the `generate` subcommand; prints one line per file while writing, then a summary."""

    def progress(f: FileResult) -> None:
        print(
            f"wrote {f.path}  {f.rows:,} rows  {_human_bytes(f.bytes)}  {f.seconds:.1f} s", file=sys.stderr, flush=True
        )

    common: dict[str, Any] = {
        "scale": args.scale,
        "seed": args.seed,
        "ratings": args.ratings,
        "gzip": args.gzip,
        "end_date": args.end_date,
        "threads": args.threads,
        "memory_limit": args.memory_limit,
        "progress": progress,
    }
    daily = args.daily is not None or args.days is not None
    if args.daily_ratings is not None and not daily:
        print("generate: error: --daily-ratings applies to daily increments; add --daily or --days", file=sys.stderr)
        return 2
    try:
        if not daily:
            results = [generate(args.out, **common)]
        else:
            first = args.daily or args.end_date + dt.timedelta(days=1)
            results = [
                generate_daily(args.out, first + dt.timedelta(days=i), daily_ratings=args.daily_ratings, **common)
                for i in range(args.days or 1)
            ]
    except ValueError as e:
        print(f"generate: error: {e}", file=sys.stderr)
        return 2
    except duckdb.Error as e:
        print(f"generate: DuckDB failed: {e}", file=sys.stderr)
        return 1
    size = results[0].scale
    print(
        f"\n{size.name} scale ({size.ratings:,} ratings, {size.movies:,} movies, {size.users:,} users), "
        f"seed {args.seed}, into {args.out}"
    )
    print(format_summary(results))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netflix_elt.generate")
    sub = parser.add_subparsers(dest="command")
    command = register_cli(sub)
    command.prog = parser.prog
    args = parser.parse_args(["generate", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
