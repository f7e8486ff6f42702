"""A small openEO batch-job API on 127.0.0.1, for `kappamask openeo benchmark`: the endpoints the openEO client
calls to create, start, poll and download a job (capabilities, basic authentication, /jobs, /jobs/{id}/results,
/jobs/{id}/logs). A job's results are what ``run(process_graph, job_options)`` writes into a folder (GeoTIFFs and
the results' metadata); a run that raises makes the job fail with its message in the job's log."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

from helpers.fake_http import Answer, serve

USER, PASSWORD = "maintainer", "s3cret-Pa55"


def serve_jobs(run, password: str = PASSWORD):
    """A server whose jobs run ``run(process_graph, job_options) -> folder``; ``server.jobs`` holds each job's
    request and state."""
    jobs: dict = {}
    work = Path(tempfile.mkdtemp(prefix="fake-openeo-"))
    token = "basic//fake-token"

    def answer(request, server):
        path = request.path.split("?")[0].rstrip("/")
        if path in ("", "/"):
            return Answer(body={"api_version": "1.2.0", "backend_version": "fake", "stac_version": "1.0.0",
                                "id": "fake", "title": "fake", "description": "fake", "links": [],
                                "endpoints": [{"path": p, "methods": m} for p, m in (
                                    ("/credentials/basic", ["GET"]), ("/jobs", ["GET", "POST"]),
                                    ("/jobs/{job_id}", ["GET"]), ("/jobs/{job_id}/results", ["GET", "POST"]),
                                    ("/jobs/{job_id}/logs", ["GET"]))]})
        if path == "/credentials/basic":
            expected = "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return Answer(403, {"code": "CredentialsInvalid", "message": "wrong credentials"})
            return Answer(body={"access_token": "fake-token"})
        if path.startswith("/jobs") and request.headers.get("Authorization") != f"Bearer {token}":
            return Answer(401, {"code": "AuthenticationRequired", "message": "log in"})
        if path == "/jobs" and request.method == "POST":
            job_id = f"j-{len(jobs) + 1}"
            jobs[job_id] = {"request": request.json(), "status": "created"}
            return Answer(201, None, {"OpenEO-Identifier": job_id, "Location": f"{server.url}/jobs/{job_id}"})
        parts = path.split("/")
        job = jobs.get(parts[2]) if len(parts) > 2 else None
        if job is None:
            return Answer(404, {"code": "JobNotFound", "message": "no such job"})
        job_id = parts[2]
        if len(parts) == 3:
            return Answer(body={"id": job_id, "status": job["status"], "created": "2026-12-07T00:00:00Z",
                                "process": job["request"]["process"]})
        if parts[3] == "logs":
            logs = [{"id": "1", "level": "error", "message": job["error"]}] if "error" in job else []
            return Answer(body={"logs": logs, "links": []})
        if parts[3] == "results" and request.method == "POST":
            body = job["request"]
            try:
                job["folder"] = Path(run(body["process"]["process_graph"], body.get("job_options") or
                                         {k: v for k, v in body.items() if k not in ("process", "title")}))
                job["status"] = "finished"
            except Exception as exc:  # the job fails; its log says why
                job["status"], job["error"] = "error", f"{type(exc).__name__}: {exc}"
            return Answer(202, None)
        if parts[3] == "results" and len(parts) == 4:
            if job["status"] != "finished":
                return Answer(400, {"code": "JobNotFinished", "message": "not finished"})
            metadata = json.loads((job["folder"] / "job-results.json").read_text())
            metadata["assets"] = {name: {**asset, "href": f"{server.url}/jobs/{job_id}/results/files/{name}"}
                                  for name, asset in metadata["assets"].items()}
            return Answer(body=metadata)
        if parts[3] == "results" and parts[4] == "files":
            return Answer(body=(job["folder"] / parts[5]).read_bytes(), headers={"Content-Type": "image/tiff"})
        return Answer(404, {"code": "NotFound", "message": path})

    server = serve(answer)
    server.jobs = jobs
    server.work = work
    return server
