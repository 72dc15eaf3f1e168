"""Seeded sample contacts with a known outcome, for the demo and the benchmark.

A share of rows repeat an earlier email (in-file duplicates, in another case)
and a share have an invalid email, so a run can be checked exactly: every
unique valid email succeeds, every repeat is skipped, every invalid row fails.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

HEADER = [
    "Email",
    "First Name",
    "Last Name",
    "Company",
    "Job Title",
    "Status",
    "Lead Score",
    "Favorite Color",
]
_FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Radia",
    "Ken",
    "Margaret",
    "Linus",
]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Perlman", "Thompson"]
_COMPANY = ["Initech", "Globex", "Umbrella", "Hooli", "Vandelay", "Acme", "Stark", "Wayne"]
_STATUS = ["lead", "prospect", "customer", "churned"]
_COLOR = ["red", "green", "blue", "teal", ""]


@dataclass(frozen=True)
class SampleExpectation:
    rows: int
    unique: int  # rows that create (or update) a contact
    duplicates: int  # rows skipped as in-file duplicates
    invalid: int  # rows failed by validation


def write_contacts_csv(
    path: Path,
    rows: int,
    *,
    seed: int = 7,
    duplicate_ratio: float = 0.05,
    invalid_ratio: float = 0.02,
    domain: str = "example.com",
) -> SampleExpectation:
    rng = random.Random(seed)
    unique: list[str] = []
    duplicates = invalid = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for i in range(rows):
            draw = rng.random()
            if draw < invalid_ratio:
                email = f"user{i}.{domain}"  # no @: fails validation
                invalid += 1
            elif draw < invalid_ratio + duplicate_ratio and unique:
                email = rng.choice(unique).upper()  # same contact, other case
                duplicates += 1
            else:
                email = f"user{i}@{domain}"
                unique.append(email)
            writer.writerow(
                [
                    email,
                    rng.choice(_FIRST),
                    rng.choice(_LAST),
                    rng.choice(_COMPANY),
                    "Engineer",
                    rng.choice(_STATUS),
                    rng.randint(0, 100),
                    rng.choice(_COLOR),
                ]
            )
    return SampleExpectation(rows, len(unique), duplicates, invalid)
