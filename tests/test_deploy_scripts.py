"""Deployment material: TLS and SuperNode keys, party data views, the Flower app config,
the compose file and the local launcher's input checks. Fast: no SuperLink is started."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from federation.config import ProtocolConfig

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PARTIES = ("swift", "bank01", "bank02")


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


# -- TLS material -------------------------------------------------------------------------
def test_gen_certs_issues_a_server_certificate_the_ca_verifies(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    done = _run(DEPLOY / "gen-certs.sh", out, "link.example.org", "10.1.2.3")
    assert done.returncode == 0, done.stderr
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(sans.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert {"localhost", "superlink", "link.example.org"} <= names
    assert {"127.0.0.1", "10.1.2.3"} <= ips
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey)
    assert server.public_key().curve.key_size >= 256
    for key in ("ca.key", "server.key"):
        assert (out / key).stat().st_mode & 0o077 == 0, f"{key} is readable by others"


def test_gen_certs_refuses_to_overwrite_keys(tmp_path: Path) -> None:
    assert _run(DEPLOY / "gen-certs.sh", tmp_path).returncode == 0
    before = (tmp_path / "ca.key").read_bytes()
    again = _run(DEPLOY / "gen-certs.sh", tmp_path)
    assert again.returncode == 2
    assert "refusing to overwrite" in again.stderr and str(tmp_path) in again.stderr
    assert (tmp_path / "ca.key").read_bytes() == before


def test_gen_certs_without_arguments_prints_usage() -> None:
    done = _run(DEPLOY / "gen-certs.sh")
    assert done.returncode == 2 and "usage:" in done.stderr


# -- SuperNode authentication keys --------------------------------------------------------
def test_node_key_is_p384_and_accepted_by_flwr_register(tmp_path: Path) -> None:
    from flwr.cli.supernode.register import try_load_public_key

    done = _run(DEPLOY / "gen-node-key.sh", tmp_path, "bank01")
    assert done.returncode == 0, done.stderr
    private = load_ssh_private_key((tmp_path / "bank01.key").read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp384r1"
    assert try_load_public_key(tmp_path / "bank01.pub")  # what `flwr supernode register` reads
    assert (tmp_path / "bank01.key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("party", ["../evil", "bank 01", ""])
def test_node_key_rejects_bad_party_ids(tmp_path: Path, party: str) -> None:
    done = _run(DEPLOY / "gen-node-key.sh", tmp_path, party)
    assert done.returncode == 2 and "party id" in done.stderr
    assert not list(tmp_path.iterdir())


# -- a party's own data view --------------------------------------------------------------
def _layout(root: Path) -> None:
    root.mkdir()
    (root / "scenarios.txt").write_text("scenario01\n")
    for stage in ("train", "test"):
        for cid in PARTIES:
            (root / "scenario01" / stage / cid).mkdir(parents=True)
            (root / "scenario01" / stage / cid / f"{cid}.csv").write_text("x\n")
        (root / "scenario01" / stage / "partitions.json").write_text("{}")


def test_party_data_copies_only_the_partys_own_files(tmp_path: Path) -> None:
    _layout(tmp_path / "all")
    done = _run(DEPLOY / "party-data.sh", tmp_path / "all", "bank01", tmp_path / "b1")
    assert done.returncode == 0, done.stderr
    copied = {p.relative_to(tmp_path / "b1").as_posix() for p in (tmp_path / "b1").rglob("*")
              if p.is_file()}
    assert copied == {"scenarios.txt"} | {
        f"scenario01/{s}/{f}" for s in ("train", "test")
        for f in ("partitions.json", "bank01/bank01.csv")}


def test_party_data_names_an_unknown_party(tmp_path: Path) -> None:
    _layout(tmp_path / "all")
    done = _run(DEPLOY / "party-data.sh", tmp_path / "all", "bank09", tmp_path / "x")
    assert done.returncode == 2 and "bank09" in done.stderr


# -- the Flower app in pyproject.toml -----------------------------------------------------
def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_flower_app_config_is_valid_and_loads_both_apps() -> None:
    from flwr.common.config import validate_config

    valid, errors, _ = validate_config(_pyproject(), check_module=True, project_dir=REPO)
    assert valid, errors


def test_run_config_defaults_match_the_protocol_defaults() -> None:
    """Every protocol parameter can be set per run, and a deployment's defaults are the
    simulation's (what server/app.py reads from the run config)."""
    run_config = _pyproject()["tool"]["flwr"]["app"]["config"]
    record = {k.replace("-", "_"): v for k, v in run_config.items()}
    assert {f.name for f in fields(ProtocolConfig)} <= set(record)
    assert ProtocolConfig.from_record(record) == ProtocolConfig()
    assert {"num-parties", "run-dir", "stages"} <= set(run_config)


def test_the_app_bundle_carries_the_party_code_and_fits() -> None:
    import io
    import zipfile

    from flwr.cli.build import build_fab_from_disk
    from flwr.common.constant import FAB_MAX_SIZE

    fab = build_fab_from_disk(REPO)
    names = set(zipfile.ZipFile(io.BytesIO(fab)).namelist())
    assert len(fab) < FAB_MAX_SIZE
    assert {"clients/app.py", "clients/bank.py", "server/app.py"} <= names
    assert not any(n.startswith((".venv/", "tests/", "runs/", "data/")) for n in names)


# -- compose file and image ---------------------------------------------------------------
def _services() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]


def _flags(command: list[str]) -> dict[str, str]:
    return dict(arg.removeprefix("--").partition("=")[::2] for arg in command[1:])


def test_only_the_superlink_publishes_a_port_and_it_requires_tls_and_auth() -> None:
    services = _services()
    assert [name for name, s in services.items() if s.get("ports")] == ["superlink"]
    link = _flags(services["superlink"]["command"])
    assert {"ssl-ca-certfile", "ssl-certfile", "ssl-keyfile", "enable-supernode-auth",
            "disable-runtime-dependency-installation"} <= set(link)
    assert "insecure" not in link


def test_each_party_has_its_own_supernode_settings_and_volumes() -> None:
    from flwr.common.config import parse_config_args

    services = _services()
    seen_volumes: set[str] = set()
    for party in PARTIES:
        service = services[f"supernode-{party}"]
        flags = _flags(service["command"])
        assert flags["superlink"] == "superlink:8000" and "insecure" not in flags
        assert flags["auth-supernode-private-key"].endswith(f"{party}.key")
        node = parse_config_args([flags["node-config"]])
        assert node["party-id"] == party
        assert node["role"] == ("pns" if party == "swift" else "bank")
        assert {"data-root", "scenario", "state-dir"} <= set(node)
        own = {_source(v) for v in service["volumes"] if "/tls/" not in _source(v)}
        assert not own & seen_volumes, f"{party} shares a volume with another party"
        seen_volumes |= own


def test_image_installs_like_the_makefile() -> None:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    steps = [shlex.split(line.removeprefix("RUN ")) for line in text.splitlines()
             if line.startswith("RUN pip")]
    first = steps[0]
    assert "torch==2.13.0" in first and "https://download.pytorch.org/whl/cpu" in first
    assert any("requirements.lock" in s for s in steps[1:])
    assert any("--no-deps" in s and "crypten==0.4.1" in s for s in steps)


# -- the local launcher refuses bad input before starting anything ------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--deadline", "soon"], "--deadline must be whole seconds"),
    (["--phase-timeout", "0.5"], "--phase-timeout must be whole seconds"),
    (["--stage", "both"], "--stage must be all, train or test"),
    (["--bogus"], "unknown option --bogus"),
    (["--data", "NOWHERE/data"], "NOWHERE/data"),
])
def test_run_local_rejects_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    args = [a.replace("NOWHERE", str(tmp_path / "nowhere")) for a in args]
    done = _run(DEPLOY / "run_local.sh", *args, tmp_path / "out")
    assert done.returncode != 0
    assert message.replace("NOWHERE", str(tmp_path / "nowhere")) in done.stderr


def test_run_local_names_bad_bank_data_in_one_line_before_starting(tmp_path: Path) -> None:
    from federation.data.generate import generate

    data = generate(tmp_path / "data", "tiny", 0)
    bad = sorted((data / "scenario01" / "train" / "bank02").glob("*.csv"))[0]
    bad.write_text(bad.read_text().replace("Flags", "Flagz", 1))
    done = _run(DEPLOY / "run_local.sh", "--data", data, tmp_path / "out")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and last.startswith("run_local.sh: ")
    assert str(bad) in last and "Flags" in last and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "superlink").exists()  # nothing was started


def test_run_local_refuses_a_non_empty_output_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    done = _run(DEPLOY / "run_local.sh", tmp_path)
    assert done.returncode == 2 and "is not empty" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def _source(volume: str) -> str:
    """The host side of a compose volume `SOURCE:/container/path[:ro]` (SOURCE may hold a
    `${VAR:-default}` with a colon of its own)."""
    return re.fullmatch(r"(.+?):(/[^:]*)(:ro)?", volume)[1]


def _host_path(source: str) -> Path | None:
    """Where a bind mount's source lands with the environment unset (None: a named
    volume)."""
    source = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", source)
    return (DEPLOY / source).resolve() if source.startswith((".", "/")) else None


def test_keys_and_party_data_never_enter_the_image() -> None:
    """Keys and data are mounted from outside the repository by default, the root
    .dockerignore (every builder) and BuildKit's Dockerfile.dockerignore list the same
    exclusions, and the image copies only scripts from deploy/."""
    root_ignore = (REPO / ".dockerignore").read_text().splitlines()
    buildkit = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    entries = [line for line in root_ignore if line and not line.startswith("#")]
    assert entries == [line for line in buildkit if line and not line.startswith("#")]
    assert {"deploy/secrets", "deploy/local", ".venv", "data", "runs", "**/*.key",
            "**/identity.key", "**/policy.json"} <= set(entries)
    for service in _services().values():
        for volume in service.get("volumes", []):
            host = _host_path(_source(volume))
            if host is None or host == (DEPLOY / "operator").resolve():
                continue  # a named volume, or the operator's connection file (no secret)
            assert REPO not in host.parents, f"{volume} mounts from inside the repository"
    copies = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY")]
    assert "COPY deploy ./deploy" not in copies
    assert all(not line.split()[1].startswith("deploy") or line.split()[1].endswith(".sh")
               for line in copies)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=" in dockerfile and "FROM ${BASE_IMAGE}" in dockerfile


def test_the_base_image_is_pinned_by_digest() -> None:
    """The default base image names its tag and its digest; the ARG still overrides it."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.M)
    assert default, "no ARG BASE_IMAGE default"
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", default[1]), default[1]
    froms = [line for line in dockerfile.splitlines() if line.startswith("FROM")]
    assert froms == ["FROM ${BASE_IMAGE}"]
    assert "--build-arg BASE_IMAGE=" in (DEPLOY / "README.md").read_text()
