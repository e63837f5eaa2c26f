# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The scoring terms, step by step, on one image
#
# CSS (category subset selection) and CSG (consistent semantic guidance), every intermediate quantity with
# its own plot:
#
# 1. `s_glob` (global CLIP cosine per class) and `s_spat` (spatial mean of CLIPSeg's map per class);
# 2. their L1 distributions `ḡ`, `s̄` and the consistency weight `α = σ(Σ ḡ·s̄ − 0.5)`;
# 3. the fused distribution `p = α·ḡ + (1 − α)·s̄`;
# 4. the normalised conditional entropy `H_i` of the rest after picking class `i`;
# 5. `s_conf = p·(1 − H)`;
# 6. stage 1: each score's top-⌊τC⌋ and their union `C_init`;
# 7. stage 2: min-max normalised scores over the pool, their sum `s_final`, and the kept top-K;
# 8. CSG: the weights `w = softmax(mean(S_glob)/T)` and the fused maps `S_glob + λ·w·S_spat`.
#
# Then the **released window pipeline** (the authors' code, presets `released` / `released++`,
# `s2c2seg.released`), on one sliding window and on **queries** (synonyms), not classes:
#
# 9. the dense logits resized to the window; the global score `g` (`patch_mean`: the window mean, or `cls`:
#    the window's CLS cosine) and the spatial score `s` (the window mean of CLIPSeg's map);
# 10. `ḡ`, `s̄` (positive-part L1), `α = Σ√(ḡ·s̄)` (Bhattacharyya), `p = α·ḡ + (1 − α)·s̄`, the residual
#     entropy `H` and `c = p·(1 − H)`;
# 11. the union of the top-⌊τQ⌋ of g, s and c, and the weighted min-max rerank `(1 − λ − 0.2)·g + λ·s + 0.2·c`
#     (it only cuts the pool when `k_max` is set; the released runs leave it `None`);
# 12. the convex fusion `(1 − 0.07)·((1 − λ)·G + λ·L) + 0.07·L·w`, `w` = softmax of the selected rows' window
#     means, and the −1e9 fill of the unselected queries;
# 13. `released++`: the refinement round (high-confidence pixels, the queries it admits).
#
# Dials (τ, k bounds, λ, temperature): sliders in JupyterLab (`interactive = True`), and always a static
# small-multiples figure (what a headless run saves).

# %% tags=["parameters"]
backend = "auto"
dataset = "voc21"
data_root = ""
baseline = "sclip"
size = "full"
n_images = 1
image_index = 0
seed = 0
tau = 0.3
k_min = 6
k_max = 20
lam = 0.6
temperature = 0.01
fusion = "category_aware"
top = 30                    # classes shown in the per-class bar plots (all when the vocabulary is smaller)
window_index = 0            # the sliding window the released pipeline is stepped through
tau_values = [0.1, 0.2, 0.3, 0.5]
k_max_values = [6, 10, 20, 40]
lam_values = [0.0, 0.3, 0.6, 1.2]
temperature_values = [0.001, 0.01, 0.1, 1.0]
interactive = True          # ipywidgets sliders (the runner sets False: headless)
out_dir = ""
# bundle cache shared by the notebooks of a run; empty = none
cache_dir = ""
records_dir = ""
backend_requested = ""

# %%
import numpy as np
import torch

from s2c2seg import analysis, plots, session

plots.use_style()
from s2c2seg.css import CSSConfig
from s2c2seg.csg import CSGConfig
from s2c2seg.predict import BundleView, class_scores, predict

S = session.open_session(
    "01_scoring_terms", backend=backend, dataset=dataset, data_root=data_root, baseline=baseline,
    n_images=max(n_images, image_index + 1), size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
    backend_requested=backend_requested,
    params=dict(tau=tau, k_min=k_min, k_max=k_max, lam=lam, temperature=temperature, fusion=fusion,
                image_index=image_index, window_index=window_index, tau_values=tau_values, k_max_values=k_max_values,
                lam_values=lam_values, temperature_values=temperature_values))
print(S.banner())
sample, bundle = S.sample(image_index), S.bundle(image_index)
view = BundleView(bundle)  # full-size maps computed once, sliced for every step and setting below
names = S.class_names
gt = sorted(int(v) for v in np.unique(sample.label) if v != 255) if sample.label is not None else []
print(f"image {sample.id}: {S.num_classes} classes, GT classes present:", [names[i] for i in gt])

# %% [markdown]
# ## 1–5 · The three scores and what they are made of

# %%
s_glob, s_spat = class_scores(bundle)  # (C,) each, the max over a class's synonyms
css_cfg = CSSConfig(tau=tau, k_min=k_min, k_max=k_max)
csg_cfg = CSGConfig(mode=fusion, lam=lam, temperature=temperature)
st = analysis.scoring_steps(s_glob, s_spat, css_cfg, always_keep=S.always_keep())
n_top = min(top, S.num_classes)
fig, ax = plots.figure(2, 3, width="double", aspect=0.62, title=f"CSS scores on {sample.id} (orange: GT classes)",
                       label=S.label)
terms = [("s_glob (global cosine)", st.s_glob), ("s_spat (CLIPSeg spatial mean)", st.s_spat),
         (f"ḡ and s̄ (α = {st.alpha:.3f})", None), ("p (fused distribution)", st.p),
         ("H (conditional entropy)", st.entropy), ("s_conf = p·(1−H)", st.conf)]
for a, (title, v) in zip(ax.flat, terms):
    if v is None:
        order = np.argsort(-st.p.numpy(), kind="stable")[:n_top]
        x = np.arange(len(order))
        a.bar(x - 0.2, st.g_bar.numpy()[order], 0.4, label="ḡ", color=plots.OKABE_ITO[4])
        a.bar(x + 0.2, st.s_bar.numpy()[order], 0.4, label="s̄", color=plots.OKABE_ITO[2])
        a.set_xticks(x, [names[i] for i in order], rotation=90)
        a.legend(frameon=False)
        a.set_title(title)
    else:
        plots.bar_scores(a, v.numpy(), names, highlight=gt, top=n_top, title=title, horizontal=False)
fig.tight_layout()
S.save(fig, "scores", close=False)

# %% [markdown]
# ## 6–7 · Stage 1 (union for recall) and stage 2 (re-rank, keep K)

# %%
use = list(st.stage1)
fig, ax = plots.figure(1, 2, width="double", aspect=0.42, label=S.label,
                       title=f"stage 1: top-{st.m} of each score, |C_init| = {int(st.union.sum())}; "
                             f"stage 2: K = {st.k}")
shown = np.flatnonzero((st.union | st.pool).numpy()) if int(st.pool.sum()) <= n_top else \
    np.argsort(-st.s_final.numpy(), kind="stable")[:n_top]
shown = np.sort(shown)
member = np.stack([st.stage1[u].numpy()[shown] for u in use] + [st.union.numpy()[shown]], axis=0).astype(float)
from matplotlib.colors import ListedColormap
import matplotlib.patches as mpatches

member_cmap = ListedColormap(["#ffffff", plots.OKABE_ITO[4]])  # white: not in the set, blue: member
plots.heatmap(ax[0, 0], member, use + ["union"], [names[i] for i in shown], cmap=member_cmap, vmin=0, vmax=1,
              title=f"stage-1 membership (top-{st.m} of each score)", colorbar=False)
ax[0, 0].legend(handles=[mpatches.Patch(facecolor=plots.OKABE_ITO[4], label="member"),
                         mpatches.Patch(facecolor="#ffffff", edgecolor="0.5", label="not a member")],
                loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=2, frameon=False)
sel = set(st.selected.tolist())
bottom = np.zeros(len(shown))
for c_, u in zip(plots.categorical(len(use)), use):
    v = st.normalised[u].numpy()[shown]
    ax[0, 1].bar(np.arange(len(shown)), v, bottom=bottom, color=c_, label=f"ŝ_{u}")
    bottom += v
in_pool = st.pool.numpy()[shown]
for j, i in enumerate(shown):
    mark = ("✓*" if int(i) in S.always_keep() else "✓") if int(i) in sel else ("" if in_pool[j] else "·")
    ax[0, 1].text(j, bottom[j] + 0.05, mark, ha="center", fontsize=6)
ax[0, 1].set_xticks(np.arange(len(shown)), [names[i] for i in shown], rotation=90)
ax[0, 1].set_ylabel("s_final")
ax[0, 1].set_title(f"stage 2: s_final = Σ min-max normalised scores; ✓ kept (top-{st.k})")
fig.text(0.5, -0.12, "min-max over the pool gives its lowest class 0 (it is still kept when K ≥ |pool|); "
         "✓* always kept (background); · not in the pool", ha="center", fontsize=5)
ax[0, 1].legend(frameon=False)
fig.tight_layout()
S.save(fig, "stages", close=False)
print("selected:", [names[i] for i in st.selected.tolist()])
print(f"pool |C_init| = {int(st.pool.sum())}, K = {st.k}: "
      + ("every pool member is kept (K ≥ |pool|), including those whose s_final is 0 after min-max"
         if st.k >= int(st.pool.sum()) else f"the {st.k} best of the pool are kept"))

# %% [markdown]
# ## 8 · CSG: category weights and fused maps

# %%
fs = analysis.fusion_steps(view, st.selected, S.vocab, csg_cfg)
kq = len(fs.queries)
q_class = [int(view.query_to_class[int(q)]) for q in fs.queries]
classes_k = sorted(set(q_class))
n_syn = {c: q_class.count(c) for c in classes_k}
w_class = np.array([float(fs.weights[[j for j in range(kq) if q_class[j] == c]].sum()) for c in classes_k])
best_q = {c: max((j for j in range(kq) if q_class[j] == c), key=lambda j: float(fs.weights[j])) for c in classes_k}
class_label = [names[c] + (f" ({n_syn[c]} queries)" if n_syn[c] > 1 else "") for c in classes_k]
shown_c = [classes_k[i] for i in np.argsort(-w_class, kind="stable")[:6]]
n_show = len(shown_c)
fig, ax = plots.figure(3, n_show + 1, width="double", aspect=0.5, label=S.label,
                       title=f"CSG ({fusion}, λ={lam}, T={temperature}) on the K = {st.k} kept classes "
                             f"({kq} text queries: a class with synonyms has one query each)")
plots.bar_scores(ax[0, 0], w_class, class_label, title="w summed per class")
ax[1, 0].imshow(sample.image)
ax[1, 0].set_title("image")
for a in (ax[1, 0], ax[2, 0]):
    a.set_axis_off()
for col, c in enumerate(shown_c, start=1):
    q = best_q[c]
    head = names[c] if n_syn[c] == 1 else f"{names[c]} ('{fs.names[q]}', 1/{n_syn[c]})"
    for row, (maps, what) in enumerate(((fs.s_glob, "S_glob"), (fs.s_spat, "S_spat"), (fs.fused, "fused"))):
        a = ax[row, col]
        a.imshow(maps[q].numpy(), cmap=plots.SEQUENTIAL_CMAP)
        a.set_title((f"{head}\nw={float(fs.weights[q]):.2f} · " if row == 0 else "") + what, fontsize=5)
        a.set_axis_off()
fig.tight_layout()
S.save(fig, "csg_maps", close=False)
share = w_class / max(float(w_class.sum()), 1e-12)
print("share of the CSG weight mass per kept class:",
      ", ".join(f"{class_label[i]} {100 * share[i]:.0f}%" for i in np.argsort(-share, kind="stable")))
if share.max() > 0.5:
    print(f"w = softmax(mean(S_glob)/T) at T = {temperature}: the class with the largest mean global map "
          f"({class_label[int(np.argmax(share))]}) takes {100 * share.max():.0f}% of the weight, so the other "
          f"classes keep (almost) only their S_glob here.")

# %% [markdown]
# ## 9–12 · The released window pipeline, one window, on queries
#
# The preset `released` at this dataset's operating point (`s2c2seg.presets.get_preset`); every quantity
# below comes from the functions `predict(..., preset=...)` runs (`s2c2seg.released`, `css`, `csg`), and the
# cell checks that its step-by-step values are the pipeline's own.

# %%
from s2c2seg import css as css_steps
from s2c2seg import released, released_fusion, released_scores
from s2c2seg.presets import get_preset

rel = get_preset("released", dataset)
rv = released.released_view(view)
if not 0 <= window_index < rv.num_windows:
    raise ValueError(f"window_index={window_index} is outside this image's {rv.num_windows} windows")
n = window_index
q2c = rv.query_to_class
queries = list(S.vocab.queries)
qnames = [f"{queries[q]} ({names[int(q2c[q])]})" if queries[q] != names[int(q2c[q])] else queries[q]
          for q in range(len(queries))]
gt_q = [q for q in range(len(queries)) if int(q2c[q]) in gt]
dense_w, local_w = rv.dense(n), rv.local(n)  # (Q, h, w): dense logits resized to the window; CLIPSeg's maps
g_patch = released.window_scores(dense_w, local_w, None, "patch_mean")[0]
has_cls = bundle.window_global is not None
g_cls = bundle.window_global[n].float() if has_cls else None
g, s = rv.scores(n, rel.score.global_score)
g_bar, s_bar = released_scores.positive_l1(g), released_scores.positive_l1(s)
alpha_r = released_scores.bhattacharyya_weight(g_bar, s_bar)
p_r = released_scores.released_mixture(g_bar, s_bar, alpha_r)
h_r = released_scores.released_residual_entropy(p_r)
c_r = css_steps.confidence_score(p_r, h_r)
selected, c_pipe, alpha_pipe = rv.selection(n, rel)
assert torch.allclose(c_r, c_pipe) and abs(float(alpha_r) - alpha_pipe) < 1e-6, "the steps differ from the pipeline"
y1, y2, x1, x2 = (int(v) for v in bundle.crop_boxes[n])
print(f"window {n} of {rv.num_windows}: rows {y1}:{y2}, cols {x1}:{x2} of the {tuple(bundle.resized_hw.tolist())} "
      f"resized image; {len(queries)} queries; preset 'released' on {dataset}: global_score="
      f"{rel.score.global_score!r}, τ={rel.select.tau}, λ={rel.fusion.lam}, k_max={rel.select.k_max}")
n_top_q = min(top, len(queries))
fig, ax = plots.figure(2, 4, width="double", aspect=0.55, label=S.label,
                       title=f"released scores, window {n} (orange: queries of GT classes; top {n_top_q} of "
                             f"{len(queries)} queries)")
resized = torch.nn.functional.interpolate(torch.as_tensor(sample.image).permute(2, 0, 1)[None].float(),
                                          size=tuple(int(v) for v in bundle.resized_hw), mode="bilinear")[0]
ax[0, 0].imshow(resized.permute(1, 2, 0).clamp(0, 255).numpy().astype(np.uint8))
ax[0, 0].add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=plots.OKABE_ITO[5],
                                      linewidth=1))
ax[0, 0].set_title(f"window {n}")
ax[0, 0].set_axis_off()
steps = [("g: patch_mean (window mean)", g_patch),
         ("g: cls (window CLS cosine)" if has_cls else "g: cls (no window_global in this bundle)", g_cls),
         ("s (CLIPSeg window mean)", s), (f"ḡ / s̄ (α = Σ√(ḡ·s̄) = {float(alpha_r):.3f})", None),
         ("p = α·ḡ + (1 − α)·s̄", p_r), ("H (residual entropy)", h_r), ("c = p·(1 − H)", c_r)]
for a, (title, v) in zip(list(ax.flat)[1:], steps):
    if title.startswith("ḡ"):
        order = np.argsort(-p_r.numpy(), kind="stable")[:n_top_q]
        x = np.arange(len(order))
        a.bar(x - 0.2, g_bar.numpy()[order], 0.4, label="ḡ", color=plots.OKABE_ITO[4])
        a.bar(x + 0.2, s_bar.numpy()[order], 0.4, label="s̄", color=plots.OKABE_ITO[2])
        a.set_xticks(x, [qnames[i] for i in order], rotation=90)
        a.legend(frameon=False)
        a.set_title(title)
    elif v is None:
        a.text(0.5, 0.5, "not in this bundle", ha="center", va="center", transform=a.transAxes)
        a.set_title(title)
    else:
        plots.bar_scores(a, v.numpy(), qnames, highlight=gt_q, top=n_top_q, title=title, horizontal=False)
    a.tick_params(axis="x", labelsize=3)
fig.tight_layout()
S.save(fig, "released_scores", close=False)
print(f"global score used by the preset: {rel.score.global_score}")

# %% [markdown]
# ### 11 · The union pool and the weighted rerank

# %%
m_q = released_scores.candidate_size(len(queries), rel.select.tau)
weights = rel.select.weights(rel.fusion.lam)
pool = released_scores.candidate_pool((g, s, c_r), m_q)
rerank = released_scores.composite_score(g, s, c_r, weights, pool)
assert torch.equal(released_scores.released_select(g, s, c_r, rel.select, weights), selected)
tops = {name: set(torch.topk(v, m_q)[1].tolist()) for name, v in (("g", g), ("s", s), ("c", c_r))}
pool_l = pool.tolist()
order = np.argsort(-rerank.numpy(), kind="stable")
fig, ax = plots.figure(1, 2, width="double", aspect=0.42, label=S.label,
                       title=f"released selection, window {n}: top-{m_q} (⌊τQ⌋, τ={rel.select.tau}) of g, s, c; "
                             f"union |pool| = {len(pool_l)}, selected {len(selected)} (k_max={rel.select.k_max})")
member = np.array([[float(pool_l[i] in tops[k]) for i in order] for k in ("g", "s", "c")] + [[1.0] * len(order)])
from matplotlib.colors import ListedColormap

plots.heatmap(ax[0, 0], member, ["top g", "top s", "top c", "union"], [qnames[pool_l[i]] for i in order],
              cmap=ListedColormap(["#ffffff", plots.OKABE_ITO[4]]), vmin=0, vmax=1, colorbar=False,
              title="membership (blue: member), pool in rerank order")
ax[0, 0].tick_params(axis="x", labelsize=3)
sel_set = set(selected.tolist())
bars = ax[0, 1].bar(np.arange(len(order)), rerank.numpy()[order],
                    color=[plots.OKABE_ITO[5] if pool_l[i] in sel_set else "0.7" for i in order])
ax[0, 1].set_xticks(np.arange(len(order)), [qnames[pool_l[i]] for i in order], rotation=90, fontsize=3)
ax[0, 1].set_title(f"rerank {weights[0]:.2f}·mm(g) + {weights[1]:.2f}·mm(s) + {weights[2]:.2f}·mm(c) "
                   "(vermillion: selected)")
fig.tight_layout()
S.save(fig, "released_selection", close=False)
bg_q = [q for q in range(len(queries)) if S.background is not None and int(q2c[q]) == S.background]
print(f"selected {len(selected)} queries: {int(sum(int(q2c[q]) in gt for q in selected.tolist()))} of classes in the "
      f"GT, {sum(q in bg_q for q in selected.tolist())} of them synonyms of the background (it has {len(bg_q)}); "
      + ("k_max is None: the whole union is kept" if rel.select.k_max is None else f"cut to k_max={rel.select.k_max}"))

# %% [markdown]
# ### 12 · Convex fusion, guide weights and the −1e9 fill

# %%
w_guide = released_fusion.released_guide_weights(dense_w[selected])
fused_w = released_fusion.convex_fuse(dense_w[selected], local_w[selected], rel.fusion)
filled = released_fusion.scatter_fill(fused_w, selected, len(queries), rel.fusion.fill)
assert torch.allclose(released.run_window(dense_w, local_w, (g, s, c_r), selected, rel,
                                          S.protocol.logit_scale).fused, fused_w)
show_q = [int(selected[j]) for j in np.argsort(-w_guide.numpy(), kind="stable")[:4]]
fig, ax = plots.figure(3, len(show_q) + 1, width="double", aspect=0.6, label=S.label,
                       title=f"released fusion, window {n}: (1 − {rel.fusion.guide_weight})·((1 − λ)·G + λ·L) + "
                             f"{rel.fusion.guide_weight}·L·w, λ = {rel.fusion.lam}; unselected rows = "
                             f"{rel.fusion.fill:g}")
plots.bar_scores(ax[0, 0], w_guide.numpy(), [qnames[int(q)] for q in selected], top=8,
                 title="w = softmax(window means)")
win_label = filled.argmax(0)
ax[1, 0].imshow(plots.colorize(q2c[win_label].numpy(), plots.label_palette(dataset, S.num_classes)))
ax[1, 0].set_title("window arg-max (class)")
ax[2, 0].set_axis_off()
ax[1, 0].set_axis_off()
ax[2, 0].text(0, 0.5, f"{len(queries) - len(selected)} unselected\nqueries filled with\n{rel.fusion.fill:g}:\n"
              f"they never win a pixel", fontsize=5, va="center")
for col, q in enumerate(show_q, start=1):
    j = int((selected == q).nonzero()[0])
    for row, (maps, what) in enumerate(((dense_w[q], "G (dense)"), (local_w[q], "L (CLIPSeg)"), (fused_w[j], "fused"))):
        a = ax[row, col]
        a.imshow(maps.numpy(), cmap=plots.SEQUENTIAL_CMAP)
        a.set_title((f"{qnames[q]}\nw={float(w_guide[j]):.2f} · " if row == 0 else "") + what, fontsize=5)
        a.set_axis_off()
fig.tight_layout()
S.save(fig, "released_fusion", close=False)
print(f"filled rows: {int((filled == rel.fusion.fill).all(dim=(1, 2)).sum())} of {len(queries)} equal the fill")

# %% [markdown]
# ## 13 · `released++`: the refinement round on this window
#
# The pixels whose max softmax probability (logit scale 40) exceeds θ_high are high-confidence; the queries
# that win them raise their global score (feedback), outsiders enter a pool (the vocabulary expansion and, by
# their CLIPSeg evidence on the low-confidence pixels, the residual pool), and the score gap decides how many
# are admitted (at most `admit_cap`), each only if it wins some previously low-confidence pixel.

# %%
from s2c2seg import refine

rpp = get_preset("released++", dataset)
g2, s2 = rv.scores(n, rpp.score.global_score)
sel2, c2, _ = rv.selection(n, rpp)
fused2 = rpp.fusion.fuse(dense_w[sel2], local_w[sel2])
conf2, _ = refine.window_confidence(fused2, S.protocol.logit_scale)
high2 = conf2 > rpp.refine.theta_high
res2 = released.run_window(dense_w, local_w, (g2, s2, c2), sel2, rpp, S.protocol.logit_scale)
admitted = list(res2.log.admitted)
print(f"released++ on {dataset}: θ_high={rpp.refine.theta_high}, t_max={rpp.refine.t_max}, "
      f"admit_cap={rpp.refine.admit_cap}, adaptive={rpp.refine.adaptive_admit}, residual β={rpp.refine.residual_beta}")
print(f"before: {len(sel2)} queries, {100 * float(high2.float().mean()):.0f}% high-confidence pixels; "
      f"rounds run {res2.log.rounds_run}; admitted {[qnames[q] for q in admitted] or 'none'}; "
      f"set IoU {res2.log.set_iou:.3f}; after: {len(res2.selected)} queries")
fig, ax = plots.figure(1, 2 + len(admitted[:3]), width="double", aspect=0.35, label=S.label,
                       title=f"released++ refinement, window {n}: admitted {len(admitted)} "
                             f"(cap {rpp.refine.admit_cap})")
ax[0, 0].imshow(conf2.numpy(), cmap=plots.SEQUENTIAL_CMAP, vmin=0, vmax=1)
ax[0, 0].set_title("max probability before")
ax[0, 1].imshow(high2.numpy(), cmap=ListedColormap(["#ffffff", plots.OKABE_ITO[4]]), vmin=0, vmax=1)
ax[0, 1].set_title(f"> θ_high (blue), {100 * float(high2.float().mean()):.0f}%")
for col, q in enumerate(admitted[:3], start=2):
    ax[0, col].imshow(local_w[q].numpy(), cmap=plots.SEQUENTIAL_CMAP)
    ax[0, col].set_title(f"admitted: {qnames[q]}\n(CLIPSeg map)", fontsize=5)
for a in ax.flat:
    a.set_axis_off()
fig.tight_layout()
S.save(fig, "released_refinement", close=False)
released_steps = {"window": n, "num_windows": rv.num_windows, "global_score": rel.score.global_score,
                  "g": g, "s": s, "alpha": float(alpha_r), "p": p_r, "entropy": h_r, "c": c_r,
                  "pool_size": m_q, "pool": pool, "rerank": rerank, "selected": selected, "guide_weights": w_guide,
                  "refine": {"before": sel2, "after": res2.selected, "high_fraction": float(high2.float().mean()),
                             "rounds_run": res2.log.rounds_run, "admitted": admitted, "set_iou": res2.log.set_iou}}

# %% [markdown]
# ## Dials: τ, k_max, λ, temperature (static small multiples)

# %%
palette = plots.label_palette(dataset, S.num_classes)


def run(tau_=tau, k_min_=k_min, k_max_=k_max, lam_=lam, temperature_=temperature):
    """S2C2Seg's prediction at one setting of the dials."""
    return predict(view, S.protocol, "s2c2seg", css=CSSConfig(tau=tau_, k_min=min(k_min_, k_max_), k_max=k_max_),
                   csg=CSGConfig(mode=fusion, lam=lam_, temperature=temperature_), background=S.background)


dials = [("τ", "tau_", tau_values), ("k_max", "k_max_", k_max_values), ("λ", "lam_", lam_values),
         ("T", "temperature_", temperature_values)]
ncols = max(len(v) for _, _, v in dials)
fig, ax = plots.figure(len(dials), ncols, width="double", aspect=0.75, label=S.label,
                       title="S2C2Seg under each dial (one row per dial, others at their defaults; "
                             "colours: predicted classes, legend below)")
dial_values = {}
seen_classes: set[int] = set()
for r, (sym, kw, vals) in enumerate(dials):
    dial_values[sym] = []
    for c_ in range(ncols):
        a = ax[r, c_]
        a.set_axis_off()
        if c_ >= len(vals):
            continue
        pred = run(**{kw: vals[c_]})
        a.imshow(plots.overlay(sample.image, pred.label_map.numpy(), palette))
        a.set_title(f"{sym}={vals[c_]} (K={len(pred.subset)})")
        dial_values[sym].append({"value": vals[c_], "K": len(pred.subset), "subset": pred.subset.tolist()})
        seen_classes.update(int(v) for v in np.unique(pred.label_map.numpy()))
fig.tight_layout()
plots.class_legend(fig, sorted(seen_classes), names, palette, ncol=8)
S.save(fig, "dials_small_multiples", close=False)

# %%
if interactive:
    try:
        import ipywidgets as W
        import matplotlib.pyplot as plt

        def _show(tau_, k_min_, k_max_, lam_, temperature_):
            pred = run(tau_, k_min_, k_max_, lam_, temperature_)
            f, a = plots.figure(1, 1, width="single", aspect=sample.image.shape[0] / sample.image.shape[1],
                                label=S.label, title=f"K={len(pred.subset)}")
            a[0, 0].imshow(plots.overlay(sample.image, pred.label_map.numpy(), palette))
            a[0, 0].set_axis_off()
            plt.show()

        W.interact(_show,
                   tau_=W.FloatSlider(value=tau, min=0.05, max=1.0, step=0.05, description="τ"),
                   k_min_=W.IntSlider(value=k_min, min=1, max=40, description="k_min"),
                   k_max_=W.IntSlider(value=k_max, min=1, max=60, description="k_max"),
                   lam_=W.FloatSlider(value=lam, min=0.0, max=3.0, step=0.1, description="λ"),
                   temperature_=W.FloatLogSlider(value=temperature, base=10, min=-4, max=1, description="T"))
    except ImportError as exc:  # no widgets: the static figure above is the fallback
        print(f"ipywidgets unavailable ({exc}); see the static small-multiples figure above")

# %%
S.write_record({
    "image": sample.id, "gt_classes": gt, "alpha": st.alpha, "m": st.m, "K": st.k,
    "s_glob": st.s_glob, "s_spat": st.s_spat, "g_bar": st.g_bar, "s_bar": st.s_bar, "p": st.p,
    "entropy": st.entropy, "s_conf": st.conf, "stage1": {u: torch.nonzero(v).reshape(-1) for u, v in st.stage1.items()},
    "union": torch.nonzero(st.union).reshape(-1),
    "s_final": torch.where(st.pool, st.s_final, torch.zeros_like(st.s_final)),
    "selected": st.selected, "csg_queries": fs.names, "csg_weights": fs.weights,
    "recall_precision": analysis.subset_recall_precision(st.selected, gt) if gt else None,
    "dials": dial_values, "released": released_steps,
})
