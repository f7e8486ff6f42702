"""``kappamask openeo ...`` sub-commands (need the openeo client for 'build')."""

from pathlib import Path


def cmd_build(args) -> int:
    from .openeo_build import write_templates

    for path in write_templates(Path(args.outdir), args.model, args.archive_url):
        print(path)
    return 0


def cmd_package(args) -> int:
    from .openeo_build import build_archive

    models = args.model or ["ukis-csmask-6b-l1c", "ukis-csmask-6b-l2a"]
    path, size, digest = build_archive(Path(args.output), models, args.weights)
    print(f"{path}  {size / 2**20:.1f} MiB  sha256 {digest}")
    print(f"job option: \"udf-dependency-archives\": [\"<URL of {path.name}>#kappamask_deps\"]")
    return 0


def register(sub) -> None:
    from .openeo_build import ARCHIVE_PLACEHOLDER

    openeo = sub.add_parser("openeo", help="openEO process graphs and UDF dependency archive")
    cmds = openeo.add_subparsers(dest="openeo", required=True)
    p = cmds.add_parser("build", help="write the process-graph templates (user-defined processes)")
    p.add_argument("outdir", nargs="?", default="process_graphs")
    p.add_argument("--model", default="default", help="model whose bands the templates load (default: %(default)s)")
    p.add_argument("--archive-url", default=ARCHIVE_PLACEHOLDER,
                   help="URL of the dependency archive, for the templates' default job options")
    p.set_defaults(func=cmd_build)
    p = cmds.add_parser("package", help="build the UDF dependency archive (kappamask_core + model files)")
    p.add_argument("output", help="archive to write (.zip)")
    p.add_argument("--model", action="append",
                   help="model id or alias to include, e.g. kappamask-v2 (repeatable; default: the bundled 6-band L1C "
                        "and L2A models)")
    p.add_argument("--weights", help="ONNX file for a model whose weights are not bundled")
    p.set_defaults(func=cmd_package)
