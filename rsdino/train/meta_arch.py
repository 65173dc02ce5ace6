"""The self-distillation meta-architecture of the DINO-family methods: student, EMA teacher, losses.

A ``Branch`` (student or teacher) holds the backbone (two backbones and a fusion block for
multimodal S1/S2 data), the DINO head, and, when their terms are on, an iBOT patch head (or the
DINO head shared), a GSD head and the mask token. ``SelfDistillation`` implements the loop's
interface (``rsdino.train.meta_architecture.MetaArchitecture``): ``losses(batch, temp)`` runs one
step's forward and returns every loss term; the training loop does the backward, the optimiser
step and ``update_teacher`` (the EMA). A batch is the default collate of ``rsdino.views`` outputs::

    batch["global"]      list of G tensors (B, C, Hg, Wg)     teacher and student
    batch["local"]       list of L tensors (B, C, h_i, w_i)   student only
    batch["masks"]       (B, G, Hg/p, Wg/p) bool              iBOT, student globals only
    batch["global_gsd"]  (B, G), batch["local_gsd"] (B, L)    metres per output pixel (SatDINO)

Crops are stacked crop-major (crop 0 of every image, then crop 1, ...), as the losses expect.
The total loss is ``w_dino L_dino + w_ibot L_ibot + w_koleo L_koleo + w_gsd L_gsd``, each term on
when its weight is > 0 (``rsdino.train.methods.loss_plan``; the masked-patch term alone:
``w_dino = 0``); the formulas are in ``rsdino.losses``.
"""

from __future__ import annotations

import copy
from itertools import groupby

import torch
import torch.nn.functional as F
from torch import nn

from rsdino.config.methods import method_recipe
from rsdino.config.variants import VariantConfig
from rsdino.losses import DINOLoss, GSDLoss, KoLeoLoss, iBOTPatchLoss, sinkhorn_knopp
from rsdino.models.backbones import build_backbone, embed_dim
from rsdino.models.catalog import backbone_entry
from rsdino.models.fusion import FUSIONS
from rsdino.models.heads import DINOHead
from rsdino.models.tokens import Encoded, encode
from rsdino.train.meta_architecture import ExportModules, MetaArchitecture
from rsdino.train.methods import LossPlan, loss_plan


class Branch(nn.Module):
    """Backbone(s) and heads of the student or the teacher.

    Args:
        variant: The variant's settings.
        in_chans: Bands of the input (S1 then S2 bands for multimodal data).
        drop_path: Stochastic-depth rate (the teacher uses 0).
        plan: The resolved loss terms.
    """

    def __init__(self, variant: VariantConfig, in_chans: int, drop_path: float, plan: LossPlan) -> None:
        super().__init__()
        self.multimodal = method_recipe(variant.method).multimodal
        kwargs = dict(variant.backbone_kwargs)
        self.gsd_register = plan.gsd
        if plan.gsd:  # one extra register token carries the GSD prediction
            kwargs["reg_tokens"] = int(kwargs.get("reg_tokens", 0)) + 1
        # The timm overrides of the backbone as built: model.json's timm_kwargs (export_modules).
        self.backbone_kwargs = kwargs
        size = variant.crops.global_size
        self.s1_bands = variant.multimodal.s1_bands if self.multimodal else 0
        if self.multimodal and in_chans <= self.s1_bands:
            raise ValueError(f"multimodal data needs more than the {self.s1_bands} S1 bands, got {in_chans}")
        self.backbone = build_backbone(variant.backbone, in_chans - self.s1_bands, size, drop_path, **kwargs)
        dim = embed_dim(self.backbone)
        self.s1_backbone: nn.Module | None = None
        self.fusion: nn.Module | None = None
        if self.multimodal:
            s1_name = variant.multimodal.s1_backbone or variant.backbone
            s1_kwargs = kwargs if s1_name == variant.backbone else {}
            self.s1_backbone = build_backbone(s1_name, self.s1_bands, size, drop_path, **s1_kwargs)
            mm = variant.multimodal
            extra = ({"n_heads": mm.cross_attention_heads, "n_layers": mm.cross_attention_layers}
                     if mm.fusion == "cross_attention" else {})
            self.fusion = FUSIONS[mm.fusion](embed_dim(self.s1_backbone), dim, dim, **extra)
        head = variant.head
        self.dino_head = DINOHead(dim, head.out_dim, head.hidden_dim, head.bottleneck_dim, head.n_layers,
                                  head.norm_last_layer)
        self.ibot_head: DINOHead | None = None
        if plan.ibot and variant.loss.ibot_separate_head:
            self.ibot_head = DINOHead(dim, variant.loss.ibot_out_dim or head.out_dim, head.hidden_dim,
                                      head.bottleneck_dim, head.n_layers, head.norm_last_layer)
        self.gsd_head = nn.Linear(dim, 1) if plan.gsd else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim)) if plan.ibot else None
        self.s1_mask_token = (nn.Parameter(torch.zeros(1, embed_dim(self.s1_backbone)))
                              if plan.ibot and self.s1_backbone is not None else None)

    @property
    def patch_head(self) -> DINOHead:
        """The head of the iBOT patch tokens (the DINO head when shared)."""
        return self.ibot_head if self.ibot_head is not None else self.dino_head

    def last_layers(self) -> list[nn.Module]:
        """The prototype layers frozen during the first epoch(s)."""
        heads = [self.dino_head] + ([self.ibot_head] if self.ibot_head is not None else [])
        return [h.last_layer for h in heads]

    def encode(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> Encoded:
        """Tokens of a batch of crops of one size; S1/S2 fused for multimodal data."""
        if self.s1_backbone is None or self.fusion is None:
            return encode(self.backbone, x, masks, self.mask_token)
        s1 = encode(self.s1_backbone, x[:, : self.s1_bands], masks, self.s1_mask_token)
        s2 = encode(self.backbone, x[:, self.s1_bands:], masks, self.mask_token)
        fused = self.fusion(_token_sequence(s1), _token_sequence(s2))
        return Encoded(cls=fused[:, 0], patches=fused[:, 1:] if s2.patches is not None else None,
                       registers=s2.registers)

    def gsd_prediction(self, encoded: Encoded) -> torch.Tensor:
        """Predicted GSD ``(B,)`` from the last register token."""
        if self.gsd_head is None or encoded.registers is None or encoded.registers.shape[1] == 0:
            raise ValueError("this branch has no GSD head / GSD register token")
        return self.gsd_head(encoded.registers[:, -1]).squeeze(-1)


def _token_sequence(encoded: Encoded) -> torch.Tensor:
    """``(B, 1 + N, D)``: the CLS token then the patch tokens (just the CLS for CNNs)."""
    cls = encoded.cls.unsqueeze(1)
    return cls if encoded.patches is None else torch.cat([cls, encoded.patches], dim=1)


class SelfDistillation(MetaArchitecture):
    """Student, EMA teacher and loss modules of one variant.

    Args:
        variant: The variant's settings (method, backbone, heads, loss weights, crops).
        in_chans: Input bands.
    """

    statistics = ("student_std", "teacher_entropy")

    def __init__(self, variant: VariantConfig, in_chans: int) -> None:
        super().__init__()
        if method_recipe(variant.method).teacher != "ema":
            raise ValueError(f"method {variant.method!r}: self-distillation needs an EMA teacher")
        self.plan = loss_plan(variant)
        if self.plan.gsd and backbone_entry(variant.backbone).family != "vit":
            raise ValueError("the GSD head needs a ViT backbone (a register token)")
        self.n_global = variant.crops.n_global
        self.student = Branch(variant, in_chans, variant.drop_path, self.plan)
        self.teacher = copy.deepcopy(self.student)
        for module in self.teacher.modules():  # no stochastic depth in the teacher
            if hasattr(module, "drop_prob"):
                module.drop_prob = 0.0
        self.teacher.requires_grad_(False)
        loss = variant.loss
        self.dino_loss = DINOLoss(variant.head.out_dim, self.n_global, loss.student_temp,
                                  loss.center_momentum)
        patch_dim = (variant.loss.ibot_out_dim or variant.head.out_dim) if loss.ibot_separate_head \
            else variant.head.out_dim
        self.ibot_loss = iBOTPatchLoss(patch_dim, loss.student_temp, loss.center_momentum) if self.plan.ibot \
            else None
        self.koleo_loss = KoLeoLoss() if self.plan.koleo else None
        self.gsd_loss = GSDLoss() if self.plan.gsd else None

    def _targets(self, logits: torch.Tensor, temp: float, centre_loss: nn.Module) -> torch.Tensor:
        if self.plan.centering == "sinkhorn_knopp":
            return sinkhorn_knopp(logits.float(), temp, self.plan.sinkhorn_iterations)
        return centre_loss.teacher_probs(logits, temp)

    def losses(self, batch: dict, teacher_temp: float) -> dict[str, torch.Tensor]:
        """Forward one batch; return ``total`` and every term (detached terms for logging).

        Also returns ``student_std`` (mean over dimensions of the batch std of the L2-normalised
        student embeddings of the first global crop: near 0 on collapse) and ``teacher_entropy``
        (mean entropy of the teacher's target distribution). Updates the loss centres.
        """
        globals_ = list(batch["global"])
        locals_ = list(batch.get("local", []))
        if len(globals_) != self.n_global:
            raise ValueError(f"expected {self.n_global} global crops, got {len(globals_)}")
        images = globals_[0].shape[0]
        global_input = torch.cat(globals_)
        masks = None
        if self.plan.ibot:
            if "masks" not in batch:
                raise ValueError("the iBOT loss needs masks in the batch (crops.mask_p > 0)")
            masks = batch["masks"].transpose(0, 1).reshape(self.n_global * images, -1).bool()

        with torch.no_grad():
            teacher = self.teacher.encode(global_input)
            teacher_logits = self.teacher.dino_head(teacher.cls)
            q_cls = self._targets(teacher_logits, teacher_temp, self.dino_loss)
            if masks is not None and self.ibot_loss is not None and teacher.patches is not None:
                teacher_patch_logits = self.teacher.patch_head(teacher.patches[masks])
                q_patch = self._targets(teacher_patch_logits, teacher_temp, self.ibot_loss)

        student_global = self.student.encode(global_input, masks)
        encoded = [student_global]
        for _, group in groupby(locals_, key=lambda crop: tuple(crop.shape[-2:])):
            encoded.append(self.student.encode(torch.cat(list(group))))
        student_cls = torch.cat([e.cls for e in encoded])
        terms: dict[str, torch.Tensor] = {}
        total = student_cls.new_zeros(())
        if self.plan.dino_weight > 0:
            terms["dino"] = self.dino_loss.from_probs(self.student.dino_head(student_cls), q_cls)
            total = total + self.plan.dino_weight * terms["dino"]
        if masks is not None and self.ibot_loss is not None and student_global.patches is not None:
            student_patch_logits = self.student.patch_head(student_global.patches[masks])
            terms["ibot"] = self.ibot_loss(student_patch_logits, q_patch, masks)
            total = total + self.plan.ibot_weight * terms["ibot"]
        if self.koleo_loss is not None:
            chunks = student_global.cls.chunk(self.n_global)
            terms["koleo"] = sum((self.koleo_loss(chunk) for chunk in chunks), student_cls.new_zeros(()))
            total = total + self.plan.koleo_weight * terms["koleo"]
        if self.gsd_loss is not None:
            predicted = torch.cat([self.student.gsd_prediction(e) for e in encoded])
            target = torch.cat([batch["global_gsd"].transpose(0, 1).reshape(-1),
                                batch["local_gsd"].transpose(0, 1).reshape(-1)]) if locals_ \
                else batch["global_gsd"].transpose(0, 1).reshape(-1)
            terms["gsd"] = self.gsd_loss(predicted, target)
            total = total + self.plan.gsd_weight * terms["gsd"]

        with torch.no_grad():
            if self.plan.centering == "centering":
                self.dino_loss.update_center(teacher_logits)
                if masks is not None and self.ibot_loss is not None:
                    self.ibot_loss.update_center(teacher_patch_logits)
            first = F.normalize(student_global.cls[:images].float(), dim=-1)
            stats = {"student_std": first.std(dim=0).mean(),
                     "teacher_entropy": torch.special.entr(q_cls.float()).sum(-1).mean()}
        return {"total": total, **terms, **stats}

    def trained_module(self) -> Branch:
        """The student (the teacher follows it by EMA)."""
        return self.student

    def last_layers(self) -> list[nn.Module]:
        """The student's prototype layers (frozen during the first epoch(s), as in DINO)."""
        return self.student.last_layers()

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """``teacher <- momentum * teacher + (1 - momentum) * student``, parameter by parameter."""
        teacher = list(self.teacher.parameters())
        student = [p.detach() for p in self.student.parameters()]
        torch._foreach_mul_(teacher, momentum)
        torch._foreach_add_(teacher, student, alpha=1 - momentum)

    def export_modules(self) -> ExportModules:
        """The teacher backbone at the folder root, the student's in ``student/``, the whole teacher."""
        return ExportModules(backbones={"teacher": self.teacher.backbone, "student": self.student.backbone},
                             whole=self.teacher, timm_kwargs=dict(self.teacher.backbone_kwargs),
                             skip_bands=self.student.s1_bands)

    def compile_blocks(self) -> int:
        """Compile every block and head of student and teacher in place (``compile_blocks``)."""
        return compile_blocks(self)


def compile_blocks(model: SelfDistillation) -> int:
    """``torch.compile`` (in place) the repeated blocks and the heads of student and teacher.

    Compiling each block rather than the whole model keeps the graphs small, leaves parameter
    names, ``state_dict`` and the EMA update untouched, and lets ``tokens.encode`` keep running the
    stages by hand. Backbones without ``blocks`` (ResNets, Swin) get only their heads compiled.
    Returns the number of compiled modules.
    """
    # Every block is its own compiled graph per crop size and mode (drop-path rates differ by
    # depth and are guarded as constants): lift dynamo's per-function limit above that count.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 128)
    compiled = 0
    for branch in (model.student, model.teacher):
        backbones = [branch.backbone] + ([branch.s1_backbone] if branch.s1_backbone is not None else [])
        modules: list[nn.Module] = [block for backbone in backbones
                                    for block in getattr(backbone, "blocks", [])]
        modules += [branch.dino_head] + ([branch.ibot_head] if branch.ibot_head is not None else [])
        for module in modules:
            module.compile()
            compiled += 1
    return compiled
