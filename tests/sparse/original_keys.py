"""Tensor names and full-size shapes of the ORIGINAL Wan-AI checkpoints.

Derived from the module definitions of the public Wan2.1/Wan2.2 repositories
(``wan/modules/model.py``, ``vace_model.py``, ``s2v/model_s2v.py`` with ``audio_utils.py``,
``auxi_blocks.py`` and ``motioner.py``, ``animate/model_animate.py`` with ``face_blocks.py``
and ``motion_encoder.py``, ``vae.py``/``vae2_1.py``, ``vae2_2.py``, ``t5.py``). Names and
their order follow ``state_dict()`` of those modules (a module's own parameters first, then
its children in registration order), which is also the order ``save_pretrained`` shards in.

Every function returns ``{tensor_name: (safetensors dtype, shape)}``, ready for
``tests.sparse.writer``. Nothing here imports torch.

Cross-checks (``tests/test_sparse_original_layout.py``): diffusers' own converters turn these
names into exactly the state dicts of ``WanTransformer3DModel`` / ``WanVACETransformer3DModel``
/ ``WanAnimateTransformer3DModel`` / ``AutoencoderKLWan``; parameter counts match the
published sizes (14B expert 14.29e9, TI2V-5B 5.0e9, 1.3B 1.42e9, VAEs 127M / 705M).
"""

from __future__ import annotations

import math

from tests.sparse.specs import ModelSpec

TensorDict = dict[str, tuple[str, tuple[int, ...]]]

TEXT_DIM = 4096      # umT5-XXL width, the DiT's text_dim
FREQ_DIM = 256       # sinusoidal time embedding width
CLIP_DIM = 1280      # open-clip ViT-H/14 penultimate width (img_emb input)
FLF2V_TOKENS = 257 * 2
VACE_IN_DIM = 96
PATCH = (1, 2, 2)

# Wan2.2-S2V-14B config.json (the released checkpoint)
S2V_AUDIO_DIM = 1024
S2V_AUDIO_LAYERS = 25          # wav2vec2 hidden states weighted by casual_audio_encoder.weights
S2V_AUDIO_TOKENS = 4
S2V_INJECT_LAYERS = (0, 4, 8, 12, 16, 20, 24, 27, 30, 33, 36, 39)
S2V_COND_DIM = 16

# Wan2.2-Animate-14B: LIA motion encoder (size 512, style 512, motion 20), face encoder
ANIMATE_MOTION_SIZE = 512
ANIMATE_STYLE_DIM = 512
ANIMATE_MOTION_DIM = 20
ANIMATE_FACE_HEADS = 4
ANIMATE_FACE_EVERY = 5         # a face adapter block after every 5th DiT block
_LIA_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


# ----------------------------------------------------------------------------- helpers

def _linear(d: TensorDict, name: str, fan_in: int, fan_out: int, dtype: str, bias: bool = True) -> None:
    d[f"{name}.weight"] = (dtype, (fan_out, fan_in))
    if bias:
        d[f"{name}.bias"] = (dtype, (fan_out,))


def _conv(d: TensorDict, name: str, c_in: int, c_out: int, kernel: tuple[int, ...], dtype: str,
          bias: bool = True) -> None:
    d[f"{name}.weight"] = (dtype, (c_out, c_in, *kernel))
    if bias:
        d[f"{name}.bias"] = (dtype, (c_out,))


def _attention(d: TensorDict, name: str, dim: int, dtype: str, image: bool = False) -> None:
    """WanSelfAttention / WanCrossAttention (q, k, v, o, RMS norm_q/norm_k), optionally the CLIP k_img/v_img."""
    for proj in "qkvo":
        _linear(d, f"{name}.{proj}", dim, dim, dtype)
    d[f"{name}.norm_q.weight"] = (dtype, (dim,))
    d[f"{name}.norm_k.weight"] = (dtype, (dim,))
    if image:
        _linear(d, f"{name}.k_img", dim, dim, dtype)
        _linear(d, f"{name}.v_img", dim, dim, dtype)
        d[f"{name}.norm_k_img.weight"] = (dtype, (dim,))


def _block(d: TensorDict, name: str, dim: int, ffn_dim: int, dtype: str, image: bool = False) -> None:
    """WanAttentionBlock: modulation, self_attn, norm3 (cross_attn_norm), cross_attn, ffn.

    norm1/norm2 are LayerNorms without affine parameters, so they have no tensors.
    """
    d[f"{name}.modulation"] = (dtype, (1, 6, dim))
    _attention(d, f"{name}.self_attn", dim, dtype)
    d[f"{name}.norm3.weight"] = (dtype, (dim,))
    d[f"{name}.norm3.bias"] = (dtype, (dim,))
    _attention(d, f"{name}.cross_attn", dim, dtype, image=image)
    _linear(d, f"{name}.ffn.0", dim, ffn_dim, dtype)
    _linear(d, f"{name}.ffn.2", ffn_dim, dim, dtype)


def _stem(d: TensorDict, spec: ModelSpec, dtype: str, pose: bool = False) -> None:
    """Patch embedding and the text/time embeddings that open every Wan DiT."""
    dim = spec.dim
    _conv(d, "patch_embedding", spec.in_channels, dim, PATCH, dtype)
    if pose:
        _conv(d, "pose_patch_embedding", spec.out_channels, dim, PATCH, dtype)
    _linear(d, "text_embedding.0", TEXT_DIM, dim, dtype)
    _linear(d, "text_embedding.2", dim, dim, dtype)
    _linear(d, "time_embedding.0", FREQ_DIM, dim, dtype)
    _linear(d, "time_embedding.2", dim, dim, dtype)
    _linear(d, "time_projection.1", dim, dim * 6, dtype)


def _head(d: TensorDict, spec: ModelSpec, dtype: str) -> None:
    d["head.modulation"] = (dtype, (1, 2, spec.dim))
    _linear(d, "head.head", spec.dim, spec.out_channels * math.prod(PATCH), dtype)


def _img_emb(d: TensorDict, dim: int, dtype: str, flf2v: bool) -> None:
    """MLPProj: LayerNorm(1280), Linear(1280,1280), GELU, Linear(1280,dim), LayerNorm(dim)."""
    if flf2v:
        d["img_emb.emb_pos"] = (dtype, (1, FLF2V_TOKENS, CLIP_DIM))
    d["img_emb.proj.0.weight"] = (dtype, (CLIP_DIM,))
    d["img_emb.proj.0.bias"] = (dtype, (CLIP_DIM,))
    _linear(d, "img_emb.proj.1", CLIP_DIM, CLIP_DIM, dtype)
    _linear(d, "img_emb.proj.3", CLIP_DIM, dim, dtype)
    d["img_emb.proj.4.weight"] = (dtype, (dim,))
    d["img_emb.proj.4.bias"] = (dtype, (dim,))


def _causal_conv1d(d: TensorDict, name: str, c_in: int, c_out: int, dtype: str, kernel: int = 3) -> None:
    _conv(d, f"{name}.conv", c_in, c_out, (kernel,), dtype)


# ----------------------------------------------------------------------------- DiT

def wan_dit_keys(spec: ModelSpec, dtype: str = "BF16") -> TensorDict:
    """The original Wan DiT state dict of ``spec`` (one expert) with full-size shapes.

    t2v/i2v/ti2v/flf2v: ``WanModel``; vace: ``VaceWanModel``; s2v: ``WanModel_S2V``;
    animate: ``WanAnimateModel``.
    """
    if spec.task == "s2v":
        return _s2v_keys(spec, dtype)
    if spec.task == "animate":
        return _animate_keys(spec, dtype)
    d: TensorDict = {}
    _stem(d, spec, dtype)
    for i in range(spec.num_layers):
        _block(d, f"blocks.{i}", spec.dim, spec.ffn_dim, dtype, image=spec.image_branch)
    _head(d, spec, dtype)
    if spec.image_branch:
        _img_emb(d, spec.dim, dtype, spec.flf2v)
    if spec.vace_layers:
        for m, layer in enumerate(spec.vace_layers):
            name = f"vace_blocks.{m}"
            _block(d, name, spec.dim, spec.ffn_dim, dtype)
            if layer == 0:
                _linear(d, f"{name}.before_proj", spec.dim, spec.dim, dtype)
            _linear(d, f"{name}.after_proj", spec.dim, spec.dim, dtype)
        _conv(d, "vace_patch_embedding", VACE_IN_DIM, spec.dim, PATCH, dtype)
    return d


def _s2v_keys(spec: ModelSpec, dtype: str) -> TensorDict:
    """WanModel_S2V as released (enable_adain, enable_framepack, no motioner): 1260 tensors."""
    dim = spec.dim
    d: TensorDict = {}
    _stem(d, spec, dtype)
    for i in range(spec.num_layers):
        _block(d, f"blocks.{i}", dim, spec.ffn_dim, dtype)
    _head(d, spec, dtype)
    _conv(d, "cond_encoder", S2V_COND_DIM, dim, PATCH, dtype)
    # CausalAudioEncoder -> MotionEncoder_tc(in_dim=audio_dim, hidden_dim=dim, num_heads=4, need_global)
    enc = "casual_audio_encoder.encoder"
    d["casual_audio_encoder.weights"] = (dtype, (1, S2V_AUDIO_LAYERS, 1, 1))
    d[f"{enc}.padding_tokens"] = (dtype, (1, 1, 1, dim))
    _causal_conv1d(d, f"{enc}.conv1_local", S2V_AUDIO_DIM, dim // 4 * S2V_AUDIO_TOKENS, dtype)
    _causal_conv1d(d, f"{enc}.conv1_global", S2V_AUDIO_DIM, dim // 4, dtype)
    _causal_conv1d(d, f"{enc}.conv2", dim // 4, dim // 2, dtype)
    _causal_conv1d(d, f"{enc}.conv3", dim // 2, dim, dtype)
    _linear(d, f"{enc}.final_linear", dim, dim, dtype)
    # AudioInjector_WAN: a cross attention and an AdaLayerNorm (linear dim -> 2*dim) per injected layer
    for n in range(len(S2V_INJECT_LAYERS)):
        _attention(d, f"audio_injector.injector.{n}", dim, dtype)
    for n in range(len(S2V_INJECT_LAYERS)):
        _linear(d, f"audio_injector.injector_adain_layers.{n}.linear", dim, dim * 2, dtype)
    d["trainable_cond_mask.weight"] = (dtype, (3, dim))
    # FramePackMotioner: three Conv3d(16, dim) at 1x, 2x and 4x compression
    _conv(d, "frame_packer.proj", 16, dim, (1, 2, 2), dtype)
    _conv(d, "frame_packer.proj_2x", 16, dim, (2, 4, 4), dtype)
    _conv(d, "frame_packer.proj_4x", 16, dim, (4, 8, 8), dtype)
    return d


def _lia_conv_layer(d: TensorDict, name: str, c_in: int, c_out: int, k: int, dtype: str,
                    downsample: bool = False, activate: bool = True, bias: bool = True) -> None:
    """LIA ConvLayer (nn.Sequential): [Blur (buffer ``kernel``)], EqualConv2d, [FusedLeakyReLU bias]."""
    i = 0
    if downsample:
        d[f"{name}.{i}.kernel"] = (dtype, (4, 4))      # make_kernel([1, 3, 3, 1]) outer product
        i += 1
    d[f"{name}.{i}.weight"] = (dtype, (c_out, c_in, k, k))
    if bias and not activate:
        d[f"{name}.{i}.bias"] = (dtype, (c_out,))
    i += 1
    if activate and bias:
        d[f"{name}.{i}.bias"] = (dtype, (1, c_out, 1, 1))


def _animate_keys(spec: ModelSpec, dtype: str) -> TensorDict:
    """WanAnimateModel: Wan2.1-I2V-style DiT + pose patch embedding, LIA motion encoder, face parts."""
    dim = spec.dim
    d: TensorDict = {}
    _stem(d, spec, dtype, pose=True)
    for i in range(spec.num_layers):
        _block(d, f"blocks.{i}", dim, spec.ffn_dim, dtype, image=True)
    _head(d, spec, dtype)
    _img_emb(d, dim, dtype, flf2v=False)
    # motion_encoder = Generator(size=512, style_dim=512, motion_dim=20)
    app = "motion_encoder.enc.net_app.convs"
    size = ANIMATE_MOTION_SIZE
    c = _LIA_CHANNELS[size]
    _lia_conv_layer(d, f"{app}.0", 3, c, 1, dtype)
    idx = 1
    for level in range(int(math.log2(size)), 2, -1):
        out = _LIA_CHANNELS[2 ** (level - 1)]
        _lia_conv_layer(d, f"{app}.{idx}.conv1", c, c, 3, dtype)
        _lia_conv_layer(d, f"{app}.{idx}.conv2", c, out, 3, dtype, downsample=True)
        _lia_conv_layer(d, f"{app}.{idx}.skip", c, out, 1, dtype, downsample=True, activate=False, bias=False)
        c = out
        idx += 1
    d[f"{app}.{idx}.weight"] = (dtype, (ANIMATE_STYLE_DIM, c, 4, 4))
    for j in range(4):
        _linear(d, f"motion_encoder.enc.fc.{j}", ANIMATE_STYLE_DIM, ANIMATE_STYLE_DIM, dtype)
    _linear(d, "motion_encoder.enc.fc.4", ANIMATE_STYLE_DIM, ANIMATE_MOTION_DIM, dtype)
    d["motion_encoder.dec.direction.weight"] = (dtype, (512, ANIMATE_MOTION_DIM))
    # face_adapter: FaceBlock per 5 DiT blocks (k/v fused, per-head RMS q/k norms)
    head_dim = dim // spec.heads
    for n in range(spec.num_layers // ANIMATE_FACE_EVERY):
        fb = f"face_adapter.fuser_blocks.{n}"
        _linear(d, f"{fb}.linear1_kv", dim, dim * 2, dtype)
        _linear(d, f"{fb}.linear1_q", dim, dim, dtype)
        _linear(d, f"{fb}.linear2", dim, dim, dtype)
        d[f"{fb}.q_norm.weight"] = (dtype, (head_dim,))
        d[f"{fb}.k_norm.weight"] = (dtype, (head_dim,))
    # face_encoder = FaceEncoder(in_dim=512, hidden_dim=dim, num_heads=4)
    d["face_encoder.padding_tokens"] = (dtype, (1, 1, 1, dim))
    _causal_conv1d(d, "face_encoder.conv1_local", ANIMATE_STYLE_DIM, 1024 * ANIMATE_FACE_HEADS, dtype)
    _causal_conv1d(d, "face_encoder.conv2", 1024, 1024, dtype)
    _causal_conv1d(d, "face_encoder.conv3", 1024, 1024, dtype)
    _linear(d, "face_encoder.out_proj", 1024, dim, dtype)
    return d


# ----------------------------------------------------------------------------- VAE

def _rms(d: TensorDict, name: str, dim: int, dtype: str, images: bool = False) -> None:
    d[f"{name}.gamma"] = (dtype, (dim, 1, 1) if images else (dim, 1, 1, 1))


def _resblock(d: TensorDict, name: str, c_in: int, c_out: int, dtype: str) -> None:
    """ResidualBlock: residual.{0 RMS, 2 conv3d, 3 RMS, 6 conv3d}, shortcut (1x1x1) when widths differ."""
    _rms(d, f"{name}.residual.0", c_in, dtype)
    _conv(d, f"{name}.residual.2", c_in, c_out, (3, 3, 3), dtype)
    _rms(d, f"{name}.residual.3", c_out, dtype)
    _conv(d, f"{name}.residual.6", c_out, c_out, (3, 3, 3), dtype)
    if c_in != c_out:
        _conv(d, f"{name}.shortcut", c_in, c_out, (1, 1, 1), dtype)


def _attnblock(d: TensorDict, name: str, dim: int, dtype: str) -> None:
    _rms(d, f"{name}.norm", dim, dtype, images=True)
    _conv(d, f"{name}.to_qkv", dim, dim * 3, (1, 1), dtype)
    _conv(d, f"{name}.proj", dim, dim, (1, 1), dtype)


def _resample(d: TensorDict, name: str, dim: int, mode: str, dtype: str, halve_up: bool) -> None:
    """Resample: resample.1 is the Conv2d; 3d modes add a temporal CausalConv3d ``time_conv``."""
    if mode.startswith("up"):
        _conv(d, f"{name}.resample.1", dim, dim // 2 if halve_up else dim, (3, 3), dtype)
        if mode == "upsample3d":
            _conv(d, f"{name}.time_conv", dim, dim * 2, (3, 1, 1), dtype)
    else:
        _conv(d, f"{name}.resample.1", dim, dim, (3, 3), dtype)
        if mode == "downsample3d":
            _conv(d, f"{name}.time_conv", dim, dim, (3, 1, 1), dtype)


def _middle(d: TensorDict, name: str, dim: int, dtype: str) -> None:
    _resblock(d, f"{name}.0", dim, dim, dtype)
    _attnblock(d, f"{name}.1", dim, dtype)
    _resblock(d, f"{name}.2", dim, dim, dtype)


def wan21_vae_keys(dtype: str = "F32") -> TensorDict:
    """Wan2.1 VAE (``Wan2.1_VAE.pth``): dim 96, z_dim 16, dim_mult [1,2,4,4]; about 127 M parameters."""
    d: TensorDict = {}
    dim, z, mult, nres = 96, 16, (1, 2, 4, 4), 2
    t_down = (False, True, True)
    # encoder
    dims = [dim * u for u in (1, *mult)]
    _conv(d, "encoder.conv1", 3, dims[0], (3, 3, 3), dtype)
    idx = 0
    for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(nres):
            _resblock(d, f"encoder.downsamples.{idx}", c_in, c_out, dtype)
            c_in = c_out
            idx += 1
        if i != len(mult) - 1:
            mode = "downsample3d" if t_down[i] else "downsample2d"
            _resample(d, f"encoder.downsamples.{idx}", c_out, mode, dtype, halve_up=True)
            idx += 1
    _middle(d, "encoder.middle", dims[-1], dtype)
    _rms(d, "encoder.head.0", dims[-1], dtype)
    _conv(d, "encoder.head.2", dims[-1], z * 2, (3, 3, 3), dtype)
    _conv(d, "conv1", z * 2, z * 2, (1, 1, 1), dtype)
    _conv(d, "conv2", z, z, (1, 1, 1), dtype)
    # decoder
    t_up = t_down[::-1]
    dims = [dim * u for u in (mult[-1], *mult[::-1])]
    _conv(d, "decoder.conv1", z, dims[0], (3, 3, 3), dtype)
    _middle(d, "decoder.middle", dims[0], dtype)
    idx = 0
    for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
        if i in (1, 2, 3):
            c_in //= 2                      # the previous upsample halved the width
        for _ in range(nres + 1):
            _resblock(d, f"decoder.upsamples.{idx}", c_in, c_out, dtype)
            c_in = c_out
            idx += 1
        if i != len(mult) - 1:
            mode = "upsample3d" if t_up[i] else "upsample2d"
            _resample(d, f"decoder.upsamples.{idx}", c_out, mode, dtype, halve_up=True)
            idx += 1
    _rms(d, "decoder.head.0", dims[-1], dtype)
    _conv(d, "decoder.head.2", dims[-1], 3, (3, 3, 3), dtype)
    return d


def wan22_vae_keys(dtype: str = "F32") -> TensorDict:
    """Wan2.2 VAE (``Wan2.2_VAE.pth``): dim 160, decoder dim 256, z_dim 48, patchified RGB (12 ch); ~705 M.

    Residual stages are nested (``encoder.downsamples.i.downsamples.j``,
    ``decoder.upsamples.i.upsamples.j``); the avg/dup shortcuts have no parameters.
    """
    d: TensorDict = {}
    dim, dec_dim, z, mult, nres = 160, 256, 48, (1, 2, 4, 4), 2
    t_down = (False, True, True)
    dims = [dim * u for u in (1, *mult)]
    _conv(d, "encoder.conv1", 12, dims[0], (3, 3, 3), dtype)
    for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
        stage = f"encoder.downsamples.{i}.downsamples"
        for j in range(nres):
            _resblock(d, f"{stage}.{j}", c_in, c_out, dtype)
            c_in = c_out
        if i != len(mult) - 1:
            t = t_down[i] if i < len(t_down) else False
            _resample(d, f"{stage}.{nres}", c_out, "downsample3d" if t else "downsample2d", dtype, halve_up=False)
    _middle(d, "encoder.middle", dims[-1], dtype)
    _rms(d, "encoder.head.0", dims[-1], dtype)
    _conv(d, "encoder.head.2", dims[-1], z * 2, (3, 3, 3), dtype)
    _conv(d, "conv1", z * 2, z * 2, (1, 1, 1), dtype)
    _conv(d, "conv2", z, z, (1, 1, 1), dtype)
    t_up = t_down[::-1]
    dims = [dec_dim * u for u in (mult[-1], *mult[::-1])]
    _conv(d, "decoder.conv1", z, dims[0], (3, 3, 3), dtype)
    _middle(d, "decoder.middle", dims[0], dtype)
    for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
        stage = f"decoder.upsamples.{i}.upsamples"
        for j in range(nres + 1):
            _resblock(d, f"{stage}.{j}", c_in, c_out, dtype)
            c_in = c_out
        if i != len(mult) - 1:
            t = t_up[i] if i < len(t_up) else False
            _resample(d, f"{stage}.{nres + 1}", c_out, "upsample3d" if t else "upsample2d", dtype, halve_up=False)
    _rms(d, "decoder.head.0", dims[-1], dtype)
    _conv(d, "decoder.head.2", dims[-1], 12, (3, 3, 3), dtype)
    return d


# ----------------------------------------------------------------------------- text encoder

UMT5_VOCAB, UMT5_DIM, UMT5_FFN, UMT5_HEADS, UMT5_LAYERS, UMT5_BUCKETS = 256384, 4096, 10240, 64, 24, 32


def umt5_original_keys(dtype: str = "BF16") -> TensorDict:
    """Wan's own umT5-XXL encoder (``models_t5_umt5-xxl-enc-bf16.pth``): about 5.68e9 parameters."""
    d: TensorDict = {"token_embedding.weight": (dtype, (UMT5_VOCAB, UMT5_DIM))}
    for n in range(UMT5_LAYERS):
        b = f"blocks.{n}"
        d[f"{b}.norm1.weight"] = (dtype, (UMT5_DIM,))
        for p in "qkvo":
            d[f"{b}.attn.{p}.weight"] = (dtype, (UMT5_DIM, UMT5_DIM))
        d[f"{b}.norm2.weight"] = (dtype, (UMT5_DIM,))
        d[f"{b}.ffn.gate.0.weight"] = (dtype, (UMT5_FFN, UMT5_DIM))
        d[f"{b}.ffn.fc1.weight"] = (dtype, (UMT5_FFN, UMT5_DIM))
        d[f"{b}.ffn.fc2.weight"] = (dtype, (UMT5_DIM, UMT5_FFN))
        d[f"{b}.pos_embedding.embedding.weight"] = (dtype, (UMT5_BUCKETS, UMT5_HEADS))
    d["norm.weight"] = (dtype, (UMT5_DIM,))
    return d


def umt5_transformers_keys(dtype: str = "BF16") -> TensorDict:
    """The same encoder with transformers' ``UMT5EncoderModel`` names (as ComfyUI's umt5_xxl files use)."""
    d: TensorDict = {"shared.weight": (dtype, (UMT5_VOCAB, UMT5_DIM))}
    for n in range(UMT5_LAYERS):
        b = f"encoder.block.{n}.layer"
        for p in "qkvo":
            d[f"{b}.0.SelfAttention.{p}.weight"] = (dtype, (UMT5_DIM, UMT5_DIM))
        d[f"{b}.0.SelfAttention.relative_attention_bias.weight"] = (dtype, (UMT5_BUCKETS, UMT5_HEADS))
        d[f"{b}.0.layer_norm.weight"] = (dtype, (UMT5_DIM,))
        d[f"{b}.1.DenseReluDense.wi_0.weight"] = (dtype, (UMT5_FFN, UMT5_DIM))
        d[f"{b}.1.DenseReluDense.wi_1.weight"] = (dtype, (UMT5_FFN, UMT5_DIM))
        d[f"{b}.1.DenseReluDense.wo.weight"] = (dtype, (UMT5_DIM, UMT5_FFN))
        d[f"{b}.1.layer_norm.weight"] = (dtype, (UMT5_DIM,))
    d["encoder.final_layer_norm.weight"] = (dtype, (UMT5_DIM,))
    return d


def param_count(tensors: TensorDict) -> int:
    """Total number of elements (parameters and persistent buffers)."""
    return sum(math.prod(shape) for _, shape in tensors.values())
