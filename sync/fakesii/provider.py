"""The provider API of docs/uplink-http.md, as fake-sii serves it under /provider/v1: the
provider files each envelope with fake-sii's own SII side, idempotently per key."""

from __future__ import annotations

import hashlib
import time

from lxml import etree

from sync import safexml
from sync.fakesii import multipart
from sync.fakesii.http import BaseHandler
from sync.uplink.answers import upload_answer


class ProviderApi(BaseHandler):
    # --- provider API (docs/uplink-http.md) ---------------------------------------------------------
    def _provider_auth(self) -> bool:
        want = self.fake.provider_token
        return want is not None and self.headers.get("Authorization", "") == f"Bearer {want}"

    def _provider_submit(self, path: str, body: bytes, respond: bool = True) -> None:
        f = self.fake
        if not self._provider_auth():
            return self._json(401, {"error": "bad token"}) if respond else None
        key = self.headers.get("Idempotency-Key")
        if not key:
            return self._json(400, {"error": "Idempotency-Key required"}) if respond else None
        digest = hashlib.sha256(body).hexdigest()
        with f._lock:
            f.provider_submits[key] += 1
            known = f.provider_by_key.get(key)
            if known is not None:
                doc = f.provider_docs[known]
                if respond:
                    if doc["sha256"] != digest:
                        return self._json(409, {"error": "Idempotency-Key reused with another body"})
                    return self._json(200, {"id": known, "status": doc["status"]})
                return None
            pid = f"p{len(f.provider_docs) + 1:08d}"
            f.provider_by_key[key] = pid
            f.provider_docs[pid] = {"sha256": digest, "status": "processing", "polls": 0, "key": key}
            f.provider_created += 1
            f.provider_created_by_key[key] += 1
        try:
            root = safexml.fromstring(body)
            company = root.findtext("{*}SetDTE/{*}Caratula/{*}RutEmisor") or ""
            sender = root.findtext("{*}SetDTE/{*}Caratula/{*}RutEnvia") or ""
            kind = "boleta" if etree.QName(root).localname == "EnvioBOLETA" else "dte"
            parts = {
                "rutSender": multipart.Part("rutSender", None, {}, sender.split("-")[0].encode()),
                "dvSender": multipart.Part("dvSender", None, {}, sender.split("-")[-1].encode()),
                "rutCompany": multipart.Part("rutCompany", None, {}, company.split("-")[0].encode()),
                "dvCompany": multipart.Part("dvCompany", None, {}, company.split("-")[-1].encode()),
                "archivo": multipart.Part("archivo", f"{key}.xml", {}, body),
            }
            dte = root.find("{*}SetDTE/{*}DTE/{*}Documento/{*}Encabezado/{*}IdDoc")
            if dte is not None:
                with f._lock:
                    f.provider_created_by_doc[(company, int(dte.findtext("{*}TipoDTE") or 0),
                                               int(dte.findtext("{*}Folio") or 0))] += 1
            token = self._provider_session_token(sender, "soap" if kind == "dte" else "rest")
            status, track, detail = f.receive(parts, token, kind)
        except (etree.XMLSyntaxError, ValueError) as exc:
            status, track, detail = "7", None, [str(exc)]
        with f._lock:
            doc = f.provider_docs[pid]
            if status != "0":
                doc.update(status="rejected", messages=[f"STATUS {status}: {upload_answer(status).meaning}", *detail])
            else:
                doc["track_id"] = track
        if respond and f.provider_latency:
            time.sleep(f.provider_latency)  # a slow provider: clients may give up (or die) after creation
        if respond:
            self._json(201, {"id": pid, "status": f.provider_docs[pid]["status"]})

    def _provider_session_token(self, sender: str, kind: str) -> str:
        """The provider authenticates to the SII as the sender (its own business)."""
        f = self.fake
        with f._lock:
            token = f"PROV{kind.upper()}{hashlib.sha1(sender.encode()).hexdigest()[:9].upper()}"
            f.tokens[token] = (sender, time.monotonic(), kind)
        return token

    def _provider_status(self, pid: str) -> None:
        f = self.fake
        if not self._provider_auth():
            return self._json(401, {"error": "bad token"})
        with f._lock:
            doc = f.provider_docs.get(pid)
            if doc is None:
                return self._json(404, {"error": "unknown id"})
            doc["polls"] += 1
            out = {"id": pid, "status": doc["status"], "track_id": doc.get("track_id"), "messages": doc.get("messages", [])}
            rec = f.envios.get(doc.get("track_id") or "")
            processed = rec is None or time.monotonic() >= rec.ready_at
            if doc["status"] == "processing" and doc["polls"] > f.processing_polls and processed:
                d = rec.docs[0] if rec and rec.docs else None
                if rec is None or rec.estado_final != "EPR" or d is None or d.estado == "RCH":
                    reason = d.reason if d else (rec.glosa if rec else "sin envío")
                    doc.update(status="rejected", messages=[reason])
                else:
                    doc.update(status="accepted" if d.estado == "DOK" else "accepted_with_objections",
                               messages=[d.reason] if d.reason else [])
                out.update(status=doc["status"], messages=doc.get("messages", []))
        self._json(200, out)
