"""LAGA-Net, local and global attention network (models.md "LAGA-Net"): a configuration of the
multi-branch builder (:mod:`reid.models.multibranch`). Not LAG-Net (local attention guided network),
which is :mod:`reid.models.lag_net`."""
from __future__ import annotations

from reid.checks import Dim, Rate, Size
from reid.models.heads.heads import TripletInput
from reid.models.multibranch import MultiBranchNet
from reid.registry import MODELS


def laganet_branches(use_cam: bool = True, use_sam: bool = True, use_local: bool = True,
                     cam_variant: str = "softmax", position: str = "relative", stripes: int = 3,
                     embedding_dim: int = 1024, dropout: float = 0.5, pooling: str = "avg",
                     triplet_input: TripletInput = "embedding") -> list[dict]:
    """LAGA-Net's branch list: [spatial (S3, layer4, S4), channel (C3, layer4, C4), global, local]."""
    head = {"head": "reduction", "head_dim": embedding_dim, "dropout": dropout, "pooling": pooling,
            "triplet_input": triplet_input}
    sam = {"name": "sam_rpe", "position": position}
    cam = {"name": "cam", "variant": cam_variant}
    branches = []
    if use_sam:
        branches.append({"name": "spatial", "before": [dict(sam)], "after": [dict(sam)], **head})
    if use_cam:
        branches.append({"name": "channel", "before": [dict(cam)], "after": [dict(cam)], **head})
    branches.append({"name": "global", **head})
    if use_local:
        branches.append({"name": "local", "global_feature": False, "stripes": stripes, **head})
    return branches


@MODELS.register("laganet")
def laganet(num_classes: int,
            backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
            use_cam: bool = True, use_sam: bool = True, use_local: bool = True,
            cam_variant: str = "softmax", position: str = "relative", share_layer4: bool = False,
            stripes: Dim = 3, embedding_dim: Dim = 1024, dropout: Rate = 0.5, pooling: str = "avg",
            input_size: Size = None, triplet_input: TripletInput = "embedding") -> MultiBranchNet:
    """LAGA-Net (models.md): ResNet trunk to layer3, four branches each with its own layer4 (last
    stride 1): spatial S3 -> layer4 -> S4 -> GAP, channel C3 -> layer4 -> C4 -> GAP, global
    layer4 -> GAP, local layer4 -> ``stripes`` stripes; a reduction head (Linear -> BN ->
    LeakyReLU(0.1) -> Dropout) and classifier per feature (6). Eval feature: concat
    [s, c, g, p1, p2, p3] before reduction (6 x 2048 = 12,288-D). ``use_sam``/``use_cam``/
    ``use_local`` drop branches for the Table III ladder (Global; +Local; +CAM; +SAM-RPE).
    ``triplet_input``: the triplets see the 1024-D embeddings before the dropout (``embedding``, the
    paper's "learned embeddings") or after it (``dropout``); the classifiers always see the latter."""
    branches = laganet_branches(use_cam, use_sam, use_local, cam_variant, position, stripes, embedding_dim,
                                dropout, pooling, triplet_input)
    return MultiBranchNet(num_classes, backbone=backbone, trunk="layer3", branches=branches,
                          share_layer4=share_layer4, input_size=input_size)
