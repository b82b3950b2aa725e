"""A minimal TFLite -> ONNX converter for MediaPipe's BlazeFace (short and full range) and Face Mesh.

Set-up only (`scripts/fetch_face_mesh.py` runs it); needs `onnx` and `tflite` (the pure-Python
flatbuffer schema bindings, no TensorFlow), both in requirements-model.txt.

Ops supported, exactly those the three graphs use: DEQUANTIZE (fp16 constant weights, folded
to fp32), DENSIFY (sparse constant weights in TFLite's CSR format, folded to dense), CONV_2D,
DEPTHWISE_CONV_2D, ADD, RELU, PRELU, PAD, MAX_POOL_2D, RESHAPE, CONCATENATION (with fused
RELU/RELU6), RESIZE_BILINEAR (ONNX Resize, linear, with TFLite's coordinate convention) and
DEPTH_TO_SPACE (TensorFlow's order is ONNX's DCR). Anything else raises NotImplementedError,
so that a model update can never silently give a wrong graph. PRELU becomes Relu(x) + alpha * Min(x, 0)
(the same values; it keeps ONNX Runtime's NCHWc layout optimisation: the mesh runs ~1.7x
faster than with a PRelu node).

Layout: the ONNX model keeps the TFLite I/O contract (NHWC float input, the same output names
and shapes); inside, 4-D activations are NCHW (one Transpose after the input, one before each
RESHAPE and 4-D output). The output is deterministic: the same input gives the same bytes.
Usage: `python scripts/tflite_to_onnx.py model.tflite model.onnx`.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper
from tflite.ActivationFunctionType import ActivationFunctionType as Act
from tflite.BuiltinOperator import BuiltinOperator as Op
from tflite.Padding import Padding
from tflite.TensorType import TensorType

_NP = {
    TensorType.FLOAT32: np.float32,
    TensorType.FLOAT16: np.float16,
    TensorType.INT32: np.int32,
    TensorType.INT64: np.int64,
    TensorType.UINT8: np.uint8,
    TensorType.INT8: np.int8,
}
NHWC2NCHW = [0, 3, 1, 2]
_INDEX_VECTORS = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}


def _index_vector(kind: int, table: Any) -> np.ndarray:
    """The values of a sparse tensor's segments or indices vector (a flatbuffer union)."""
    vec = _INDEX_VECTORS[kind]()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy().astype(np.int64)


NCHW2NHWC = [0, 2, 3, 1]


class Converter:
    """One TFLite flatbuffer (a single subgraph) to an ONNX ModelProto (opset 17)."""

    def __init__(self, buf: bytes, prelu_as_relu: bool = True) -> None:
        self.prelu_as_relu = prelu_as_relu
        self.m = tflite.Model.GetRootAsModel(buf, 0)
        if self.m.SubgraphsLength() != 1:
            raise NotImplementedError("only single-subgraph models")
        self.g = self.m.Subgraphs(0)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.const: dict[int, np.ndarray] = {}  # tensor index -> constant value (TFLite layout)
        self.name: dict[int, str] = {}  # tensor index -> ONNX value name (activation)
        self.nchw: dict[int, bool] = {}  # activation stored as NCHW?
        self.sparse: dict[int, np.ndarray] = {}  # tensor index -> stored values of a sparse constant
        self._uid = 0
        for i in range(self.g.TensorsLength()):
            t = self.g.Tensors(i)
            b = self.m.Buffers(t.Buffer())
            if b is not None and b.DataLength() > 0:
                arr = np.frombuffer(b.DataAsNumpy().tobytes(), dtype=_NP[t.Type()])
                if t.Sparsity() is not None:  # the non-zero values only: DENSIFY folds it
                    self.sparse[i] = arr
                    continue
                self.const[i] = arr.reshape(self.shape(i)) if self.shape(i) else arr

    # -- helpers ---------------------------------------------------------------------------

    def shape(self, i: int) -> list[int]:
        """The static shape of tensor `i`."""
        t = self.g.Tensors(i)
        return [int(v) for v in t.ShapeAsNumpy()] if t.ShapeLength() else []

    def tname(self, i: int) -> str:
        """The TFLite name of tensor `i`."""
        return self.g.Tensors(i).Name().decode()

    def uid(self, prefix: str) -> str:
        """A fresh, deterministic value name."""
        self._uid += 1
        return f"{prefix}_{self._uid}"

    def init(self, arr: np.ndarray, prefix: str = "c") -> str:
        """A new initializer holding `arr`; its name."""
        n = self.uid(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def node(self, op: str, ins: list[str], outs: list[str] | None = None, **attrs: Any) -> str:
        """Append a node; the name of its first output."""
        outs = outs or [self.uid(op)]
        self.nodes.append(helper.make_node(op, ins, outs, **attrs))
        return outs[0]

    def act_in(self, i: int, want_nchw: bool = True) -> str:
        """The ONNX name of tensor `i` in the wanted layout (constants become initializers)."""
        if i in self.const:
            c = self.const[i].astype(np.float32) if self.const[i].dtype == np.float16 else self.const[i]
            if c.ndim == 4 and want_nchw:
                c = c.transpose(NHWC2NCHW)
            return self.init(c)
        n, is_nchw = self.name[i], self.nchw[i]
        if is_nchw and not want_nchw:
            return self.node("Transpose", [n], perm=NCHW2NHWC)
        if not is_nchw and want_nchw and len(self.shape(i)) == 4:
            return self.node("Transpose", [n], perm=NHWC2NCHW)
        return n

    def set_out(self, i: int, name: str, nchw: bool) -> None:
        """Record that tensor `i` is the ONNX value `name`, in NCHW layout or not."""
        self.name[i], self.nchw[i] = name, nchw

    def fused(self, x: str, act: int) -> str:
        """Apply a fused activation to `x`."""
        if act == Act.NONE:
            return x
        if act == Act.RELU:
            return self.node("Relu", [x])
        if act == Act.RELU6:
            return self.node("Clip", [x, self.init(np.float32(0)), self.init(np.float32(6))])
        raise NotImplementedError(f"fused activation {act}")

    @staticmethod
    def same_pads(
        in_hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int], d: tuple[int, int] = (1, 1)
    ) -> list[int]:
        """ONNX pads (begin..., end...) equivalent to TensorFlow's SAME padding."""
        pads_b, pads_e = [], []
        for n, kk, ss, dd in zip(in_hw, k, s, d, strict=True):
            eff = (kk - 1) * dd + 1
            out = -(-n // ss)
            tot = max((out - 1) * ss + eff - n, 0)
            pads_b.append(tot // 2)
            pads_e.append(tot - tot // 2)
        return pads_b + pads_e

    @staticmethod
    def opts(op: Any, cls: Any) -> Any:
        """The builtin options table of `op`, read as `cls`."""
        t = op.BuiltinOptions()
        o = cls()
        o.Init(t.Bytes, t.Pos)
        return o

    def densify(self, i: int) -> np.ndarray:
        """The dense value of sparse constant `i` (TFLite's FormatConverter::SparseToDense).

        The stored values are visited in traversal order over the expanded dimensions (the
        tensor's own, then one per block); a DENSE level runs over `dense_size` indices, a
        SPARSE_CSR level over `array_indices[segments[p]:segments[p + 1]]` of its parent p."""
        sp = self.g.Tensors(i).Sparsity()
        shape = self.shape(i)
        rank = len(shape)
        order = [int(v) for v in sp.TraversalOrderAsNumpy()]
        block_map = [int(v) for v in sp.BlockMapAsNumpy()] if sp.BlockMapLength() else []
        levels: list[tuple[int, np.ndarray | None, np.ndarray | None]] = []
        for d in range(sp.DimMetadataLength()):
            dm = sp.DimMetadata(d)
            if dm.Format() == 0:  # DENSE
                levels.append((int(dm.DenseSize()), None, None))
            else:  # SPARSE_CSR
                segments = _index_vector(dm.ArraySegmentsType(), dm.ArraySegments())
                levels.append((0, segments, _index_vector(dm.ArrayIndicesType(), dm.ArrayIndices())))
        block_size = {bm: levels[order.index(rank + k)][0] for k, bm in enumerate(block_map)}
        values = self.sparse[i]
        dense = np.zeros(shape, values.dtype)
        coords = [0] * len(order)
        pos = 0

        def visit(level: int, parent: int) -> None:
            nonlocal pos
            if level == len(order):
                expanded = [0] * len(order)
                for lv, dim in enumerate(order):
                    expanded[dim] = coords[lv]
                orig = [expanded[d] * block_size.get(d, 1) for d in range(rank)]
                for k, bm in enumerate(block_map):
                    orig[bm] += expanded[rank + k]
                dense[tuple(orig)] = values[pos]
                pos += 1
                return
            size, segments, indices = levels[level]
            if segments is None or indices is None:
                for j in range(size):
                    coords[level] = j
                    visit(level + 1, parent * size + j)
            else:
                for j in range(int(segments[parent]), int(segments[parent + 1])):
                    coords[level] = int(indices[j])
                    visit(level + 1, j)

        visit(0, 0)
        if pos != values.size:
            raise ValueError(f"sparse tensor {self.tname(i)}: {pos} of {values.size} values placed")
        return dense

    # -- conversion ------------------------------------------------------------------------

    def _conv(self, op: Any, code: int, ins: list[int], out: int) -> None:
        dw = code == Op.DEPTHWISE_CONV_2D
        o = self.opts(op, tflite.DepthwiseConv2DOptions if dw else tflite.Conv2DOptions)
        w = self.const[ins[1]].astype(np.float32)  # conv: O,KH,KW,I ; depthwise: 1,KH,KW,C*M
        ih, iw = self.shape(ins[0])[1:3]
        cin = self.shape(ins[0])[3]
        if dw:
            if w.shape[3] != cin:
                raise NotImplementedError("depth_multiplier != 1")
            w = w.transpose(3, 0, 1, 2)  # C,1,KH,KW
        else:
            w = w.transpose(0, 3, 1, 2)  # O,I,KH,KW
        kh, kw = w.shape[2:]
        s = (o.StrideH(), o.StrideW())
        d = (o.DilationHFactor(), o.DilationWFactor())
        pads = self.same_pads((ih, iw), (kh, kw), s, d) if o.Padding() == Padding.SAME else [0, 0, 0, 0]
        cins = [self.act_in(ins[0]), self.init(w, "w")]
        if len(ins) > 2 and ins[2] >= 0:
            cins.append(self.init(self.const[ins[2]].astype(np.float32), "b"))
        y = self.node(
            "Conv",
            cins,
            kernel_shape=[kh, kw],
            strides=list(s),
            dilations=list(d),
            pads=pads,
            group=cin if dw else 1,
        )
        self.set_out(out, self.fused(y, o.FusedActivationFunction()), True)

    def _prelu(self, ins: list[int], out: int) -> None:
        a = self.const[ins[1]].astype(np.float32)  # [1,1,C] or [C] (HWC broadcast)
        c = a.shape[-1]
        a = a.reshape(-1, c)
        if a.shape[0] != 1:
            raise NotImplementedError("spatial PReLU alpha")
        slope = self.init(a.reshape(c, 1, 1), "alpha")
        x = self.act_in(ins[0])
        if self.prelu_as_relu:
            neg = self.node("Mul", [self.node("Min", [x, self.init(np.float32(0), "zero")]), slope])
            y = self.node("Add", [self.node("Relu", [x]), neg])
        else:
            y = self.node("PRelu", [x, slope])
        self.set_out(out, y, True)

    def _op(self, op: Any, code: int, ins: list[int], out: int) -> None:  # noqa: C901
        if code == Op.DENSIFY:
            if ins[0] not in self.sparse:
                raise NotImplementedError("DENSIFY of a non-constant")
            self.const[out] = self.densify(ins[0])
        elif code == Op.DEQUANTIZE:
            if ins[0] not in self.const:
                raise NotImplementedError("DEQUANTIZE of a non-constant")
            self.const[out] = self.const[ins[0]].astype(np.float32)
        elif code in (Op.CONV_2D, Op.DEPTHWISE_CONV_2D):
            self._conv(op, code, ins, out)
        elif code == Op.ADD:
            o = self.opts(op, tflite.AddOptions)
            four = len(self.shape(out)) == 4
            y = self.node("Add", [self.act_in(ins[0], four), self.act_in(ins[1], four)])
            self.set_out(out, self.fused(y, o.FusedActivationFunction()), four)
        elif code == Op.RELU:
            self.set_out(out, self.node("Relu", [self.act_in(ins[0])]), self.nchw[ins[0]])
        elif code == Op.PRELU:
            self._prelu(ins, out)
        elif code == Op.PAD:
            p = self.const[ins[1]].astype(np.int64)  # [rank, 2] in NHWC order
            if p.shape[0] == 4:
                p = p[NHWC2NCHW]
            pads = np.concatenate([p[:, 0], p[:, 1]])
            y = self.node("Pad", [self.act_in(ins[0]), self.init(pads, "pads")], mode="constant")
            self.set_out(out, y, p.shape[0] == 4)
        elif code == Op.MAX_POOL_2D:
            o = self.opts(op, tflite.Pool2DOptions)
            k_, s_ = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
            ih, iw = self.shape(ins[0])[1:3]
            pads = self.same_pads((ih, iw), k_, s_) if o.Padding() == Padding.SAME else [0, 0, 0, 0]
            y = self.node(
                "MaxPool", [self.act_in(ins[0])], kernel_shape=list(k_), strides=list(s_), pads=pads
            )
            self.set_out(out, self.fused(y, o.FusedActivationFunction()), True)
        elif code == Op.RESHAPE:
            shp = np.array(self.shape(out), dtype=np.int64)
            y = self.node("Reshape", [self.act_in(ins[0], False), self.init(shp, "shape")])
            self.set_out(out, y, False)
        elif code == Op.CONCATENATION:
            o = self.opts(op, tflite.ConcatenationOptions)
            rank = len(self.shape(out))
            axis = o.Axis() % rank
            if rank == 4:
                axis = NHWC2NCHW.index(axis)
            y = self.node("Concat", [self.act_in(i, rank == 4) for i in ins], axis=axis)
            self.set_out(out, self.fused(y, o.FusedActivationFunction()), rank == 4)
        elif code == Op.RESIZE_BILINEAR:
            o = self.opts(op, tflite.ResizeBilinearOptions)
            if o.AlignCorners():
                mode = "align_corners"
            elif o.HalfPixelCenters():
                mode = "half_pixel"
            else:
                mode = "asymmetric"  # TFLite's default: in = out * in_size / out_size
            n, h, w, c = self.shape(out)
            sizes = self.init(np.array([n, c, h, w], np.int64), "sizes")
            y = self.node(
                "Resize",
                [self.act_in(ins[0]), "", "", sizes],
                mode="linear",
                coordinate_transformation_mode=mode,
            )
            self.set_out(out, y, True)
        elif code == Op.DEPTH_TO_SPACE:
            o = self.opts(op, tflite.DepthToSpaceOptions)
            y = self.node("DepthToSpace", [self.act_in(ins[0])], blocksize=o.BlockSize(), mode="DCR")
            self.set_out(out, y, True)
        else:
            names = {v: k for k, v in Op.__dict__.items() if not k.startswith("_")}
            raise NotImplementedError(f"TFLite op {names.get(code, code)}")

    def convert(self) -> onnx.ModelProto:
        """The ONNX model (checked by `onnx.checker`)."""
        g = self.g
        inputs, outputs = [], []
        for k in range(g.InputsLength()):
            i = g.Inputs(k)
            inputs.append(helper.make_tensor_value_info(self.tname(i), TensorProto.FLOAT, self.shape(i)))
            if len(self.shape(i)) == 4:
                self.set_out(i, self.node("Transpose", [self.tname(i)], perm=NHWC2NCHW), True)
            else:
                self.set_out(i, self.tname(i), False)
        for k in range(g.OperatorsLength()):
            op = g.Operators(k)
            oc = self.m.OperatorCodes(op.OpcodeIndex())
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            self._op(op, code, [int(v) for v in op.InputsAsNumpy()], int(op.OutputsAsNumpy()[0]))
        for k in range(g.OutputsLength()):
            i = g.Outputs(k)
            self.node("Identity", [self.act_in(i, False)], [self.tname(i)])
            outputs.append(helper.make_tensor_value_info(self.tname(i), TensorProto.FLOAT, self.shape(i)))
        graph = helper.make_graph(self.nodes, "converted", inputs, outputs, self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tflite_to_onnx.py"
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def convert_bytes(buf: bytes) -> bytes:
    """The serialized ONNX model of a TFLite flatbuffer."""
    return Converter(buf).convert().SerializeToString()


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        data = convert_bytes(f.read())
    with open(sys.argv[2], "wb") as f:
        f.write(data)
    print("wrote", sys.argv[2])
