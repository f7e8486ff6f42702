"""``kappamask stats``: cloud statistics per area of interest, from class maps this package wrote."""

from __future__ import annotations

from pathlib import Path

from ...foundation import plugins
from ...foundation.errors import InputError

TABLE_SUFFIXES = (".csv", ".parquet")


def cmd_stats(args) -> int:
    from ...io import atomic_path
    from ..areas import areas_bbox, read_areas
    from ..stats import area_statistics, clear_dates
    from .classify import inputs_of

    output = Path(args.output)
    if output.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"{output}: the table is written as CSV or Parquet; name it .csv or .parquet")
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        raise InputError(f"{args.plot}: the plot is a PNG; name it .png")
    searching = bool(getattr(args, "stac_api", None))
    if not args.inputs and not searching:
        raise InputError("give class maps: COGs this package wrote (*_kappamask.tif), their STAC items or run "
                         "folders, or search a STAC API of published masks (--stac-api URL --collection ID)")
    areas = read_areas(args.aoi, id_column=args.id_column)
    if searching and not args.bbox:  # search where the areas are
        args.bbox = list(areas_bbox(areas))
    maps = [item if hasattr(item, "assets") else Path(item) for item in inputs_of(args)]
    if not maps:
        raise InputError("no class maps found: name COGs (*_kappamask.tif), their STAC items or run folders, or search "
                         "a STAC API of published masks (--stac-api)")
    table = area_statistics(maps, areas, buffers=args.buffer)
    table = table.sort_values(["area_id", "datetime"], kind="stable").reset_index(drop=True)
    with atomic_path(output) as temp:
        if output.suffix.lower() == ".csv":
            table.to_csv(temp, index=False)
        else:
            try:
                table.to_parquet(temp, index=False)
            except ImportError:
                raise InputError("writing Parquet needs pyarrow: pip install 'kappamask[stats]'; or name the table "
                                 ".csv") from None
    if args.plot:
        plot(table, Path(args.plot))
    clear = clear_dates(table)
    print(f"{output}: {len(table)} rows ({table['area_id'].nunique()} areas x {table['datetime'].nunique()} dates); "
          f"{len(clear)} clear (at most 10 % cloud and shadow, at least 90 % with data)")
    return 0


def plot(table, path: Path, areas: int = 12) -> Path:
    """One panel per area (the first ``areas``): for each date a bar of the area's shares, stacked in the classes'
    own colours (the COG palette's), with the part without data on top."""
    try:
        import matplotlib
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'kappamask[stats]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ...foundation.classes import CLASS_BY_NAME
    from ...io import atomic_path
    from ..stats import CLASS_NAMES

    shown = list(dict.fromkeys(table["area_id"]))[:areas]
    columns = min(len(shown), 3)
    panels = -(-len(shown) // columns)
    fig, axes = plt.subplots(panels, columns, figsize=(4.2 * columns, 2.8 * panels), dpi=110, squeeze=False,
                             sharey=True)
    for ax, area_id in zip(axes.ravel(), shown):
        rows = table[table["area_id"] == area_id]
        labels = [str(w)[:10] for w in rows["datetime"]]
        valid = rows["valid_fraction"].fillna(0).to_numpy(float)
        bottom = np.zeros(len(rows))
        for name in CLASS_NAMES:
            share = rows[name].fillna(0).to_numpy(float) * valid * 100
            ax.bar(labels, share, bottom=bottom, color=np.array(CLASS_BY_NAME[name].rgb) / 255,
                   label=name.replace("_", " "), edgecolor="black", linewidth=0.3)
            bottom += share
        ax.bar(labels, 100 - bottom, bottom=bottom, color="white", hatch="//", edgecolor="grey", linewidth=0.3,
               label="no data")
        ax.set_title(str(area_id), fontsize="medium")
        ax.tick_params(axis="x", labelrotation=45, labelsize="small")
        ax.set_ylim(0, 100)
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("% of the area")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize="small", frameon=False)
    more = table["area_id"].nunique() - len(shown)
    fig.suptitle("Classes per area and date" + (f" (the first {len(shown)}; {more} more in the table)" if more else ""))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png")
    plt.close(fig)
    return path


def register(sub) -> None:
    p = sub.add_parser("stats", help="cloud statistics per area of interest (which dates are clear over my fields), "
                                     "from class maps this package wrote")
    p.add_argument("inputs", nargs="*", help="class maps: COGs (*_kappamask.tif), their STAC items (.json), or run "
                                             "folders of kappamask classify")
    for source in plugins.sources():  # masks published in a STAC API (kappamask_stac): --stac-api, --collection
        source.add_arguments(p)
    p.add_argument("--aoi", required=True, help="the areas: GeoJSON (WGS84 unless it says otherwise), or any vector "
                                                "file geopandas reads")
    p.add_argument("--id-column", help="the areas' property that names them (default: the feature id, else its "
                                       "position)")
    p.add_argument("-o", "--output", required=True, help="the table: .csv or .parquet")
    p.add_argument("--buffer", help="grow classes by metres before the usable share, e.g. cloud=300,shadow=100")
    p.add_argument("--plot", metavar="FILE.png", help="also draw each area's clear and cloudy shares over time")
    p.set_defaults(func=cmd_stats)
