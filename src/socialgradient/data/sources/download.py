"""Fetch the public source files, verifying each against a pinned sha256 (standard library).

:data:`REGISTRY` names every file the readers of :mod:`socialgradient.data.sources` know,
with where it goes under a shared data folder, a URL and, where known, the sha256 of the
exact bytes at that URL. Pinned digests come from the copies in ``shared/data`` (whose
READMEs record them); those copies are unmodified files from the repositories at a fixed
commit, so the URL is that commit's raw file. Official publisher URLs whose bytes have not
been checked here carry ``sha256=None`` and are refused unless ``allow_unverified=True``
(the digest is then reported so it can be pinned).

No test touches the network; the checksum check is tested on a ``file://`` URL.
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import NamedTuple

from socialgradient.data.schema import fail
from socialgradient.util.files import sha256_of

_DFE = (
    "https://raw.githubusercontent.com/dfe-analytical-services/CSC_outcomes_and_enablers/"
    "2f5d11a431050523dab58810083259d3313029ae/data-raw/"
)
_ONS = (
    "https://raw.githubusercontent.com/jtrim-ons/ons-lookups/"
    "85d0ba6e476badf3861d8dc7485aecf40598d031/csv/"
)
_IOD = (
    "https://raw.githubusercontent.com/anetobradley/energy_flex/"
    "709f2f8b79a86e273a86f6c7324f4fc2b1aeeefd/02-EnergyModel/Energy_Intensity_Analysis/"
    "data/imd/"
)


class Entry(NamedTuple):
    """One public file: its URL, where it goes, its sha256 (None: not pinned), its publisher."""

    url: str
    dest: str  # path under the shared data folder
    sha256: str | None
    publisher: str


REGISTRY: dict[str, Entry] = {
    "iod_file1": Entry(
        _IOD + "File_1_-_IMD2019_Index_of_Multiple_Deprivation.csv.gz",
        "iod2019/File_1_-_IMD2019_Index_of_Multiple_Deprivation.csv.gz",
        "08eaaf9e55258b7b920531931ca601eb1a54760d8878afb1e70df5e904644f74",
        "MHCLG (mirror)",
    ),
    "iod_file2": Entry(
        _IOD + "File_2_-_IoD2019_Domains_of_Deprivation.csv.gz",
        "iod2019/File_2_-_IoD2019_Domains_of_Deprivation.csv.gz",
        "c6e6fa32c444bf34a8511d4a15b43046e18cb6ff3d702daaf5cf505b6388efe0",
        "MHCLG (mirror)",
    ),
    "iod_file6": Entry(
        _IOD + "File_6_-_IoD2019_Population_Denominators.csv.gz",
        "iod2019/File_6_-_IoD2019_Population_Denominators.csv.gz",
        "f4ee47fbe7a8b2ccbc0c8575f92d7972ce99582c11412b1583aebbd3a6099995",
        "MHCLG (mirror)",
    ),
    "iod_file7": Entry(
        "https://assets.publishing.service.gov.uk/media/5dc407b440f0b6379a7acc8d/"
        "File_7_-_All_IoD2019_Scores__Ranks__Deciles_and_Population_Denominators_3.csv",
        "iod2019/File_7_-_All_IoD2019_Scores__Ranks__Deciles_and_Population_Denominators_3.csv",
        None,
        "MHCLG",
    ),
    "ltla_utla19": Entry(
        _ONS + "177.csv",
        "la_lookups/ons_LTLA19_to_UTLA19_Apr2019_EW.csv",
        "e368cac411eafd299d7b72d8d39eb338b10706000d44e37e76906a4c7816f8da",
        "ONS (mirror)",
    ),
    "ltla_utla23": Entry(
        _DFE + "LTLA-UTLA_Apr23_Lookup_England-Wales.csv",
        "la_lookups/ons_LTLA23_to_UTLA23_Apr2023_EW.csv",
        "63d04f464198ccf80f5b0c255ce689ad222d827d2db2d0e07902145b21ec201e",
        "ONS (DfE copy)",
    ),
    "population_la": Entry(
        _DFE + "ons_mid-year_population_estimates_2012_to_2024.csv",
        "population_la/ons_mid-year_population_estimates_2012_to_2024.csv",
        "bd6420a0edd97dc2bfb25e70955399778a460483d5c417032b8fcb92230bfaa3",
        "ONS/DfE",
    ),
}
for _key, _name, _digest in (
    (
        "dfe_cin",
        "b1_children_in_need_2013_to_2025.csv",
        "fc065f5eb33a97fcbf3b2df6a7a55e15dbf645ce9739ef0128776461602179ad",
    ),
    (
        "dfe_referrals",
        "c1_children_in_need_referrals_and_rereferrals_2013_to_2025.csv",
        "e548b10b4e2de4e8845c35eae274f6280636f5ff262f8189cbe62c320591f75d",
    ),
    (
        "dfe_assessment_factors",
        "c3_factors_identified_at_end_of_assessment_2018_to_2025.csv",
        "ddf55eeb6334d12300e36e30f29fe0136d8050e403a02ee10bed02158f4738d8",
    ),
    (
        "dfe_cla",
        "cla_number_and_rate_per_10k_children.csv",
        "8228ce8c6f55fb1ee59b65988dad56c79ea7703c03eedd5c0f8af5997d6686ce",
    ),
    (
        "dfe_cpp_starts",
        "d3_cpps_subsequent_plan_2013_to_2025.csv",
        "06f9b63e9329925fea34d75a7f5e9c44d97fed4c1aed8cb2a302af21ef4113ab",
    ),
    (
        "dfe_cpp_duration",
        "d5_cpps_at31march_by_duration_2013_to_2025.csv",
        "b203854c252fc055df1dc05d649de63c2f18c0246b1bd2282c2f3632530f296d",
    ),
):
    REGISTRY[_key] = Entry(_DFE + _name, "dfe_csc/" + _name, _digest, "DfE")
#: DfE CIN Census XSDs by collection year (the DfE's files as kept by liia-tools, MIT licence);
#: used by :mod:`socialgradient.data.census.codes` to validate returns. Never committed.
_LIIA = (
    "https://raw.githubusercontent.com/SocialFinanceDigitalLabs/liia-tools/"
    "0dd821c2968f6930b62ee2223da0203b33db0a96/liiatools/spec/cin_census/"
)
for _year, _digest in (
    (2019, "b2c1524d859ce652ab1762b1e33f9001877d948954ab465e008d1530f65993e5"),
    (2020, "b2c1524d859ce652ab1762b1e33f9001877d948954ab465e008d1530f65993e5"),
    (2021, "e8f03d63e344edeae8d46ebf6f71dc826f1cd1c80f19eab8b5d74305738d644e"),
    (2022, "8edb370d341e595ad06c743258c7c419207769f5b219bd93237a679c6980ee51"),
    (2023, "9327b3e2deb166108cfa33f87e4af773ac9b14cdd6ebf4dffbd2c7a34f1490dd"),
    (2024, "9327b3e2deb166108cfa33f87e4af773ac9b14cdd6ebf4dffbd2c7a34f1490dd"),
):
    REGISTRY[f"cin_schema_{_year}"] = Entry(
        _LIIA + f"CIN_schema_{_year}.xsd",
        f"cin_census/CIN_schema_{_year}.xsd",
        _digest,
        "DfE (liia-tools copy)",
    )


def fetch(
    url: str, dest, sha256: str | None, *, allow_unverified: bool = False, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` atomically, refusing bytes whose sha256 differs.

    Raises
    ------
    InputError
        ``checksum_mismatch`` (nothing is left at ``dest``), ``unverified_download`` (no
        digest and not ``allow_unverified``), ``download_failed``.
    """
    if sha256 is None and not allow_unverified:
        raise fail(
            "unverified_download",
            f"no sha256 pinned for {url}; pass "
            "allow_unverified=True to fetch it and report its digest",
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    h = hashlib.sha256()
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
                for block in iter(lambda: response.read(1 << 20), b""):
                    h.update(block)
                    f.write(block)
        except (OSError, ValueError) as err:
            raise fail("download_failed", f"cannot fetch {url}: {err}") from err
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise fail(
                "checksum_mismatch",
                f"{url}: sha256 {digest}, expected {sha256}; file not written to {str(dest)!r}",
            )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def download(shared_dir, names=None, *, allow_unverified: bool = False) -> dict[str, Path]:
    """Fetch registry entries (default: all with a pinned digest) into ``shared_dir``.

    Files already present with the right digest are not fetched again.
    """
    shared = Path(shared_dir)
    if names is None:
        names = [k for k, e in REGISTRY.items() if e.sha256 or allow_unverified]
    out = {}
    for name in names:
        if name not in REGISTRY:
            raise fail("unknown_source", f"no registry entry {name!r}; known: {sorted(REGISTRY)}")
        e = REGISTRY[name]
        dest = shared / e.dest
        if e.sha256 and dest.is_file() and sha256_of(dest) == e.sha256:
            out[name] = dest
            continue
        out[name] = fetch(e.url, dest, e.sha256, allow_unverified=allow_unverified)
    return out
