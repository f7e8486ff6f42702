"""``kappamask openeo ...`` sub-commands (need the openeo client for 'build')."""

from pathlib import Path

from kappamask_core.foundation import InputError, checked_url, redact

DEFAULT_ARCHIVE_MODELS = ["ukis-csmask-6b-l1c", "ukis-csmask-6b-l2a"]


PUBLICATION_FLAGS = ("code_url", "onnxruntime_wheel", "contact_name", "contact_email", "organization", "org_id",
                     "onnx_deps")


def cmd_build(args) -> int:
    from .catalogue import Contact, publish
    from .processes import write_templates

    if Path(args.outdir).exists() and not Path(args.outdir).is_dir():
        raise InputError(f"{args.outdir} is a file; name a folder to write the processes into")
    if args.base_url is None:
        for flag in PUBLICATION_FLAGS:
            if getattr(args, flag):
                raise InputError(f"--{flag.replace('_', '-')} belongs to a publication: give --base-url too")
        for path in write_templates(Path(args.outdir), args.model):
            print(path)
        return 0
    if not args.code_url:
        raise InputError("--base-url needs --code-url (the public repository the catalogue entries link to)")
    contact = Contact(**{k: v for k, v in (("name", args.contact_name), ("organization", args.organization),
                                          ("email", args.contact_email)) if v})
    base_url = checked_url(args.base_url, "--base-url", schemes=("https",))
    for path in publish(Path(args.outdir), base_url, model=args.model, archive_models=args.archive_model,
                        onnxruntime=args.onnxruntime_wheel, code_url=args.code_url, contact=contact,
                        organization=args.org_id or "kappamask", onnx_deps=args.onnx_deps):
        print(path)
    print(redact(f"serve the folder at {base_url}; the benchmark scenarios carry no reference yet: record each "
                 f"on the backend with 'kappamask openeo benchmark {args.outdir} --record' and serve the folder "
                 "again"))
    return 0


def cmd_benchmark(args) -> int:
    from .benchmark import benchmark

    differing = benchmark(Path(args.published), backend=args.backend, processes=args.process,
                          record_reference=args.record, auth=args.auth, user=args.user,
                          log=lambda line: print(redact(line), flush=True))
    return 1 if differing else 0


def cmd_package(args) -> int:
    import tempfile

    from .archive import build_archive, onnxruntime_wheel, openvino_wheels
    from .processes import DEPENDENCY_FOLDER

    models = args.model or DEFAULT_ARCHIVE_MODELS
    with tempfile.TemporaryDirectory(prefix="kappamask-wheels-") as wheels:
        wheel = args.onnxruntime_wheel or (onnxruntime_wheel(Path(wheels)) if args.with_onnxruntime else None)
        openvino = args.openvino_wheel or (openvino_wheels(Path(wheels)) if args.with_openvino else [])
        path, size, digest = build_archive(Path(args.output), models, args.weights, wheel, openvino)
    print(f"{path}  {size / 2**20:.1f} MiB  sha256 {digest}")
    print(f"job option: \"udf-dependency-archives\": [\"<URL of {path.name}>#{DEPENDENCY_FOLDER}\"]")
    return 0


def register(sub) -> None:
    openeo = sub.add_parser("openeo", help="openEO process graphs and UDF dependency archive")
    cmds = openeo.add_subparsers(dest="openeo", required=True)
    p = cmds.add_parser("build", help="write the user-defined processes; with --base-url (and --code-url), everything "
                                      "to publish them in the openEO algorithm catalogue's layout (archive, processes, "
                                      "records, benchmark scenarios)")
    p.add_argument("outdir", nargs="?", default="process_graphs",
                   help="folder to write into (default: %(default)s)")
    p.add_argument("--model", default="default", help="model whose bands the processes load (default: %(default)s)")
    p.add_argument("--base-url", metavar="URL",
                   help="public https:// folder where the files will be served (e.g. a release's assets or object "
                        "storage); without it the processes are templates that name no archive")
    p.add_argument("--code-url", metavar="URL",
                   help="public repository of this code, for the catalogue records (required with --base-url)")
    p.add_argument("--org-id", metavar="ID",
                   help="the organization's folder in the catalogue, algorithm_catalog/ID/ (default: kappamask)")
    p.add_argument("--archive-model", action="append", metavar="ID",
                   help="model to put into the archive (repeatable; default: the bundled 6-band L1C and L2A models, "
                        "or --model)")
    p.add_argument("--onnxruntime-wheel", metavar="FILE",
                   help="onnxruntime wheel for CPython 3.11 on manylinux x86_64 (default: downloaded with pip)")
    p.add_argument("--onnx-deps", action="store_true",
                   help="ship a small archive (the project and its models, no onnxruntime) and let batch jobs take "
                        "onnxruntime from the archive Copernicus Data Space hosts (onnx_deps_python311.zip); the "
                        "default archive carries the onnxruntime this project was tested with, and also serves "
                        "synchronous requests")
    p.add_argument("--contact-name", help="contact named in the catalogue records")
    p.add_argument("--contact-email", help="contact's e-mail in the catalogue records")
    p.add_argument("--organization", help="contact's organization in the catalogue records")
    p.set_defaults(func=cmd_build)
    p = cmds.add_parser("benchmark", help="run the benchmark scenarios of a publication on an openEO backend as the "
                                          "catalogue does, and compare the results with their reference; with "
                                          "--record, make the results the reference")
    p.add_argument("published", help="the folder 'kappamask openeo build --base-url' wrote")
    p.add_argument("--backend", metavar="URL",
                   help="openEO backend to run on (default: the one each scenario names, Copernicus Data Space)")
    p.add_argument("--process", action="append", metavar="ID", help="only this process's scenario (repeatable)")
    p.add_argument("--record", action="store_true",
                   help="write the results into each process's reference/ folder and name them in its scenario "
                        "(serve the folder again afterwards)")
    p.add_argument("--auth", choices=("oidc", "basic", "none"), default="oidc",
                   help="how to log in: OpenID Connect (default; the openEO client's device flow or stored refresh "
                        "token), basic (--user, password from KAPPAMASK_OPENEO_PASSWORD) or none")
    p.add_argument("--user", help="user name for --auth basic")
    p.set_defaults(func=cmd_benchmark)
    p = cmds.add_parser("package", help="build the UDF dependency archive (kappamask_core + model files)")
    p.add_argument("output", help="archive to write (.zip)")
    p.add_argument("--model", action="append",
                   help="model id or alias to include, e.g. kappamask-v2 (repeatable; default: the bundled 6-band L1C "
                        "and L2A models)")
    p.add_argument("--weights", help="ONNX file for a model whose weights are not bundled")
    p.add_argument("--with-onnxruntime", action="store_true",
                   help="also carry onnxruntime for the UDF runtime (CPython 3.11, manylinux x86_64), downloaded "
                        "with pip; needed where the runtime has none and no other way provides it")
    p.add_argument("--onnxruntime-wheel", metavar="FILE", help="carry onnxruntime from this wheel instead")
    p.add_argument("--with-openvino", action="store_true",
                   help="also carry OpenVINO (about 32 MiB more) and the models' faithful bf16 variants, which "
                        "executors whose CPUs have bfloat16 arithmetic run in place of the networks")
    p.add_argument("--openvino-wheel", metavar="FILE", action="append",
                   help="carry OpenVINO from these wheels instead (openvino and openvino-telemetry; repeatable)")
    p.set_defaults(func=cmd_package)
