"""The stand-in Qdrant's (NOT Qdrant) gRPC API: qdrant.Points, qdrant.Collections and qdrant.Qdrant
servicers over the same store, converting with qdrant-client's own protobuf conversions."""

from __future__ import annotations

import time
from typing import Any

import grpc

from benchmarks.standin_qdrant.points import ApiError, TITLE, client_version, norm_id
from benchmarks.standin_qdrant.store import Collection, Store


def grpc_servicers(store: Store) -> tuple[Any, Any, Any]:
    from qdrant_client import grpc as qg
    from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc
    from qdrant_client.grpc import collections_service_pb2_grpc as cs
    from qdrant_client.grpc import points_service_pb2_grpc as ps
    from qdrant_client.grpc import qdrant_pb2_grpc as qs
    from qdrant_client.http import models

    def dump(x: Any) -> Any:
        if hasattr(x, "model_dump"):
            return x.model_dump(mode="json", exclude_none=True)
        if isinstance(x, dict):
            return {k: dump(v) for k, v in x.items()}
        if isinstance(x, list):
            return [dump(v) for v in x]
        return x

    def grpc_id(p: Any) -> int | str:
        return p.num if p.WhichOneof("point_id_options") == "num" else norm_id(p.uuid)

    def dense(v: Any) -> list:
        if v.HasField("dense"):
            return v.dense.data
        if v.HasField("sparse") or v.HasField("multi_dense") or len(v.indices.data):
            raise ApiError(400, "Wrong input: sparse and multi-vectors are not supported by the stand-in")
        return v.data

    def vectors(coll: Collection, v: Any) -> Any:
        kind = v.WhichOneof("vectors_options")
        if kind == "vector":
            return coll.vector(dense(v.vector))
        if kind == "vectors":
            return coll.vector({n: dense(vv) for n, vv in v.vectors.vectors.items()})
        raise ApiError(400, "Wrong input: point without vectors")

    def selector(sel: Any) -> dict:
        return dump(GrpcToRest.convert_points_selector(sel)) if sel.WhichOneof("points_selector_one_of") else {}

    def record(r: dict) -> Any:
        return qg.RetrievedPoint(
            id=RestToGrpc.convert_extended_point_id(r["id"]),
            payload=RestToGrpc.convert_payload(r["payload"]) if r["payload"] else None,
            vectors=RestToGrpc.convert_vector_struct_output(r["vector"]) if r["vector"] is not None else None)

    def update(res: dict) -> Any:
        status = qg.UpdateStatus.Completed if res["status"] == "completed" else qg.UpdateStatus.Acknowledged
        return qg.UpdateResult(operation_id=res["operation_id"], status=status)

    def guarded(fn):
        def wrapper(self, request, context):
            start = time.perf_counter()
            try:
                return fn(self, request, start)
            except ApiError as e:
                context.abort(e.grpc_code, e.message)
            except ValueError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Wrong input: {e}")
        wrapper.__name__ = fn.__name__
        return wrapper

    def since(start: float) -> float:
        return time.perf_counter() - start

    def with_payload(req: Any) -> Any:
        return GrpcToRest.convert_with_payload_selector(req.with_payload) if req.HasField("with_payload") else False

    def with_vectors(req: Any) -> Any:
        return GrpcToRest.convert_with_vectors_selector(req.with_vectors) if req.HasField("with_vectors") else False

    class Points(ps.PointsServicer):
        @guarded
        def Upsert(self, req, start):  # noqa: N802
            store.maybe_fault()  # FAULT INJECTION (no-op unless fail_ratio > 0)
            coll = store.get(req.collection_name)
            items = [(grpc_id(p.id), vectors(coll, p.vectors), GrpcToRest.convert_payload(p.payload))
                     for p in req.points]
            res = store.upsert_prepared(req.collection_name, items, req.wait)
            return qg.PointsOperationResponse(result=update(res), time=since(start))

        @guarded
        def Get(self, req, start):  # noqa: N802
            wp, wv = with_payload(req), with_vectors(req)
            recs = store.retrieve(req.collection_name, [GrpcToRest.convert_point_id(i) for i in req.ids],
                                  dump(wp), dump(wv))
            return qg.GetResponse(result=[record(r) for r in recs], time=since(start))

        @guarded
        def Count(self, req, start):  # noqa: N802
            flt = dump(GrpcToRest.convert_filter(req.filter)) if req.HasField("filter") else None
            return qg.CountResponse(result=qg.CountResult(count=store.count(req.collection_name, flt)["count"]),
                                    time=since(start))

        @guarded
        def Scroll(self, req, start):  # noqa: N802
            body = {"filter": dump(GrpcToRest.convert_filter(req.filter)) if req.HasField("filter") else None,
                    "offset": GrpcToRest.convert_point_id(req.offset) if req.HasField("offset") else None,
                    "limit": req.limit if req.HasField("limit") else 10,
                    "with_payload": dump(with_payload(req)), "with_vector": dump(with_vectors(req))}
            page = store.scroll(req.collection_name, body)
            nxt = page["next_page_offset"]
            return qg.ScrollResponse(result=[record(r) for r in page["points"]], time=since(start),
                                     next_page_offset=None if nxt is None else RestToGrpc.convert_extended_point_id(nxt))

        @guarded
        def Delete(self, req, start):  # noqa: N802
            res = store.delete_points(req.collection_name, selector(req.points), req.wait)
            return qg.PointsOperationResponse(result=update(res), time=since(start))

        @guarded
        def SetPayload(self, req, start):  # noqa: N802
            body = {**selector(req.points_selector), "payload": GrpcToRest.convert_payload(req.payload),
                    "key": req.key if req.HasField("key") else None}
            res = store.set_payload(req.collection_name, body, False, req.wait)
            return qg.PointsOperationResponse(result=update(res), time=since(start))

        @guarded
        def OverwritePayload(self, req, start):  # noqa: N802
            body = {**selector(req.points_selector), "payload": GrpcToRest.convert_payload(req.payload)}
            res = store.set_payload(req.collection_name, body, True, req.wait)
            return qg.PointsOperationResponse(result=update(res), time=since(start))

        @guarded
        def UpdateBatch(self, req, start):  # noqa: N802
            ops = [dump(GrpcToRest.convert_points_update_operation(op)) for op in req.operations]
            res = store.batch(req.collection_name, ops, req.wait)
            return qg.UpdateBatchResponse(result=[update(r) for r in res], time=since(start))

    class Collections(cs.CollectionsServicer):
        @guarded
        def Get(self, req, start):  # noqa: N802
            with store.lock:
                info = store.get(req.collection_name).info()
            return qg.GetCollectionInfoResponse(
                result=RestToGrpc.convert_collection_info(models.CollectionInfo.model_validate(info)), time=since(start))

        @guarded
        def List(self, req, start):  # noqa: N802
            with store.lock:
                names = list(store.collections)
            return qg.ListCollectionsResponse(collections=[qg.CollectionDescription(name=n) for n in names],
                                              time=since(start))

        @guarded
        def CollectionExists(self, req, start):  # noqa: N802
            with store.lock:
                exists = req.collection_name in store.collections
            return qg.CollectionExistsResponse(result=qg.CollectionExists(exists=exists), time=since(start))

        @guarded
        def Create(self, req, start):  # noqa: N802
            body = {"vectors": dump(GrpcToRest.convert_vectors_config(req.vectors_config))
                    if req.HasField("vectors_config") else {}}
            ok = store.create_collection(req.collection_name, body)
            return qg.CollectionOperationResponse(result=ok, time=since(start))

        @guarded
        def Delete(self, req, start):  # noqa: N802
            return qg.CollectionOperationResponse(result=store.delete_collection(req.collection_name),
                                                  time=since(start))

        @guarded
        def ListAliases(self, req, start):  # noqa: N802
            return qg.ListAliasesResponse(aliases=[], time=since(start))

        @guarded
        def ListCollectionAliases(self, req, start):  # noqa: N802
            store.get(req.collection_name)
            return qg.ListAliasesResponse(aliases=[], time=since(start))

    class Root(qs.QdrantServicer):
        def HealthCheck(self, req, context):  # noqa: N802
            return qg.HealthCheckReply(title=TITLE, version=client_version(), commit="standin")

    return (Points(), ps.add_PointsServicer_to_server), (Collections(), cs.add_CollectionsServicer_to_server), \
        (Root(), qs.add_QdrantServicer_to_server)
