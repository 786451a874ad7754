"""l2lab's Feast provider: Feast's own (``PassthroughProvider``) with a fast conversion of pushed frames.

``FeatureStore.push`` and ``write_to_online_store`` hand a DataFrame to ``Provider.ingest_df``, which Feast turns
into online rows through Arrow and one Python call per value (``feast.utils._convert_arrow_to_proto``): 23 ms of
the 28 ms a one-row write of the 111-feature structural view took. The live scorer writes a row per grid step,
so that conversion was most of its Feast path. ``frame_rows`` builds the same rows (entity key, feature Values,
event and created times) straight from the frame's numpy columns when the view is a plain ``FeatureView`` without
field mapping whose fields are scalar floats, ints, strings or bools held in matching column dtypes; anything
else takes Feast's path unchanged. The rows are identical to Feast's, Value for Value
(``tests/featurestore/test_online_store.py``): NaN and missing values become empty Values, times are naive UTC
datetimes truncated to microseconds.

Configured as ``provider:`` in ``feature_store.yaml`` (Feast's extension point for providers). Constructing it
also installs ``l2lab.featurestore.serving``'s JSON conversion in Feast's feature server.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from feast.feature_view import FeatureView
from feast.infra.passthrough_provider import PassthroughProvider
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from l2lab.featurestore import serving

# value type -> (Value field, numpy dtype kinds the column may have, Python conversion)
_SCALARS = {
    ValueType.DOUBLE: ("double_val", "f", float),
    ValueType.FLOAT: ("float_val", "f", float),
    ValueType.INT64: ("int64_val", "iu", int),
    ValueType.INT32: ("int32_val", "iu", int),
    ValueType.BOOL: ("bool_val", "b", bool),
    ValueType.STRING: ("string_val", "OU", str),
}


def double_values(xs: List[float], field: str = "double_val") -> List[ValueProto]:
    """Python floats as Feast Values (NaN: an empty Value, as Feast writes a missing value)."""
    return [ValueProto() if x != x else ValueProto(**{field: x}) for x in xs]


def _column_values(col: pd.Series, value_type: ValueType) -> Optional[List[ValueProto]]:
    """One column as Feast's Values, or None if this column needs Feast's general conversion."""
    spec = _SCALARS.get(value_type)
    if spec is None:
        return None
    field, kinds, py = spec
    if col.dtype.kind not in kinds or isinstance(col.dtype, pd.api.extensions.ExtensionDtype):
        return None
    arr = col.to_numpy()
    if col.dtype.kind == "f":
        return double_values(arr.tolist(), field)
    if col.dtype.kind in "OU":
        out = []
        for x in arr.tolist():
            if x is None or (isinstance(x, float) and x != x):
                out.append(ValueProto())
            elif isinstance(x, str):
                out.append(ValueProto(string_val=x))
            else:
                return None
        return out
    return [ValueProto(**{field: py(x)}) for x in arr.tolist()]


def _datetimes(col: pd.Series) -> List:
    """Feast's conversion of a time column: naive UTC datetimes, microseconds (nanoseconds truncated)."""
    ts = pd.to_datetime(col)
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.to_numpy("datetime64[ns]").astype("datetime64[us]").tolist()


def frame_rows(feature_view, df: pd.DataFrame, field_mapping: Optional[Dict] = None) -> Optional[List]:
    """``df`` as the rows ``PassthroughProvider.ingest_df`` would write, or None when Feast's path is needed."""
    if type(feature_view) is not FeatureView or field_mapping or feature_view.batch_source is None:
        return None
    source = feature_view.batch_source
    if source.field_mapping or not source.timestamp_field or source.timestamp_field not in df.columns:
        return None
    join_keys = {e.name: e.dtype.to_value_type() for e in feature_view.entity_columns}
    wanted = [*((f.name, f.dtype.to_value_type()) for f in feature_view.features), *join_keys.items()]
    if any(name not in df.columns for name, _ in wanted) or not df.columns.is_unique:
        return None
    columns = {}
    dtypes = df.dtypes.to_dict()
    doubles = [name for name, vtype in wanted if vtype == ValueType.DOUBLE and dtypes[name] == np.float64]
    if doubles:  # the common case, in one block: every feature a float64 column
        block = df[doubles].to_numpy(np.float64).T.tolist()
        for name, col in zip(doubles, block):
            columns[name] = double_values(col)
    for name, vtype in wanted:
        if name in columns:
            continue
        values = _column_values(df[name], vtype)
        if values is None:
            return None
        columns[name] = values
    n = len(df)
    keys = [EntityKeyProto(join_keys=list(join_keys), entity_values=[columns[k][i] for k in join_keys])
            for i in range(n)]
    names = [f.name for f in feature_view.features]
    feats = [dict(zip(names, vals)) for vals in zip(*(columns[f] for f in names))] if names else [{}] * n
    event = _datetimes(df[source.timestamp_field])
    created_col = source.created_timestamp_column
    if created_col:
        if created_col not in df.columns:
            return None
        created = _datetimes(df[created_col])
    else:
        created = [None] * n
    return list(zip(keys, feats, event, created))


class L2labProvider(PassthroughProvider):
    """Feast's provider; pushed frames converted by ``frame_rows``; the feature server's JSON conversion by
    ``l2lab.featurestore.serving`` (installed here: the server builds its provider before its first answer)."""

    def __init__(self, config):
        super().__init__(config)
        serving.install()

    def ingest_df(self, feature_view, df: pd.DataFrame, field_mapping: Optional[Dict] = None):
        rows = frame_rows(feature_view, df, field_mapping)
        if rows is None:
            return super().ingest_df(feature_view, df, field_mapping)
        self.online_write_batch(self.repo_config, feature_view, rows, progress=None)

    async def ingest_df_async(self, feature_view, df: pd.DataFrame, field_mapping: Optional[Dict] = None):
        rows = frame_rows(feature_view, df, field_mapping)
        if rows is None:
            return await super().ingest_df_async(feature_view, df, field_mapping)
        await self.online_write_batch_async(self.repo_config, feature_view, rows, progress=None)
