"""An independent functional BNext forward over a state dict in the authors' module names.

Written from the equations of SPEC sections 1-4 (not from bnext's modules), so a
checkpoint in the authors' layout can be checked end to end: the logits of
``bnext.create_model(...)`` loaded from it must equal these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _bn(x, sd, prefix):
    return F.batch_norm(
        x,
        sd[prefix + "running_mean"],
        sd[prefix + "running_var"],
        sd[prefix + "weight"],
        sd[prefix + "bias"],
        training=False,
        eps=1e-5,
    )


def _binary_weight(sd, prefix, sign_below):
    w, t = sd[prefix + "weight"], float(sd[prefix + "temperature"])
    return torch.sign(w) if t < sign_below else (w / max(t, 1e-8)).clamp(-1, 1)


def _unit(x, sd, p, stride, kernel, elm, recoupling, mix_residual=False, downsample=None, sign_below=1e-7):
    pool = (lambda t: F.avg_pool2d(t, 2, 2)) if stride == 2 else (lambda t: t)
    w = _binary_weight(sd, p + "binary_conv.", sign_below)
    y = F.conv2d(torch.sign(x + sd[p + "move.bias"]), w, stride=stride, padding=kernel // 2)
    y = F.prelu(_bn(y, sd, p + "norm1."), sd[p + "activation2.weight"])
    if elm:
        r = F.prelu(x, sd[p + "activation1.weight"])
        r = downsample(r) if downsample else pool(r)
    else:
        r = pool(x)
    if recoupling:
        s = sd[p + "scale"].clamp(0, 1)
        source = r if (mix_residual or not elm) else pool(x)
        m = s * source + (1 - s) * y
        g = F.adaptive_avg_pool2d(m, 1)
        g = F.relu(F.conv2d(g, sd[p + "se.se.1.weight"], sd[p + "se.se.1.bias"]))
        y = torch.sigmoid(F.conv2d(g, sd[p + "se.se.3.weight"], sd[p + "se.se.3.bias"])) * y
    if elm:
        return _bn(y * r, sd, p + "norm2.") + r
    return (_bn(y, sd, p + "norm2.") if recoupling else y) + r


def bnext_forward(sd, x, widths, stem_stride, elm_attention=True, recoupling=True):
    """Logits of a BNext whose weights are in the authors' naming (``feature.i....``)."""
    x = _bn(F.conv2d(x, sd["feature.0.conv1.weight"], stride=stem_stride, padding=1), sd, "feature.0.bn1.")
    for i in range(1, len(widths)):
        new_stage = widths[i] != widths[i - 1] and widths[i] != widths[1]
        stride = 2 if new_stage else 1
        elm = elm_attention and i % 2 == 0
        mixer = f"feature.{i}.{'Attention' if elm_attention else 'FFN_3x3'}."
        x = _unit(x, sd, mixer, stride, 3, elm, recoupling)
        if widths[i] == widths[i - 1]:
            x = _unit(x, sd, f"feature.{i}.FFN.", 1, 1, False, recoupling)
        else:
            x = torch.cat([_unit(x, sd, f"feature.{i}.FFN_{j}.", 1, 1, False, recoupling) for j in (1, 2)], 1)
    x = F.adaptive_avg_pool2d(F.prelu(x, sd["prelu.weight"]), 1).flatten(1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


def bnext18_forward(sd, x, stem_stride):
    """Logits of a BNext-18 whose weights are in the authors' naming (``layerK.i.Attention....``)."""
    if stem_stride == 2:
        x = F.max_pool2d(_bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1."), 3, 2, 1)
    else:
        x = _bn(F.conv2d(x, sd["conv1.weight"], padding=1), sd, "bn1.")
    for stage in range(4):
        for block in range(2):
            p = f"layer{stage}.{block}."
            stride = 2 if stage > 0 and block == 0 else 1
            downsample = None
            if p + "Attention.downsample.1.weight" in sd:

                def downsample(t, p=p, stride=stride):
                    t = F.avg_pool2d(t, 2, stride)
                    return _bn(F.conv2d(t, sd[p + "Attention.downsample.1.weight"]), sd, p + "Attention.downsample.2.")

            x = _unit(
                x,
                sd,
                p + "Attention.",
                stride,
                3,
                True,
                True,
                mix_residual=True,
                downsample=downsample,
                sign_below=1e-5,
            )
            x = _unit(x, sd, p + "FFN.", 1, 3, False, True, sign_below=1e-5)
    x = F.adaptive_avg_pool2d(F.prelu(x, sd["prelu.weight"]), 1).flatten(1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])
