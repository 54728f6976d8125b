"""scelm.tl.rank_genes_elm: exact decompositions, scanpy compatibility, ground truth."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from helpers import rel_err

import scelm

matplotlib.use("Agg")
KEY = "rank_genes_elm"


def _centroids(adata, groupby, g, reference="rest"):
    Y = adata.obsm["X_elm"].astype(np.float64)
    lab = adata.obs[groupby].astype(str).to_numpy()
    ref = lab != g if reference == "rest" else lab == reference
    return Y[lab == g].mean(0), Y[ref].mean(0)


@pytest.mark.parametrize("reference", ["rest", "CD14+ Monocyte"])
@pytest.mark.parametrize("fixture", ["fitted_pbmc", "ensemble_pbmc"])
def test_scores_are_exact_decompositions_of_the_map_shown(fixture, reference, request):
    """Separation sums to the centroid distance in X_elm, position to the coordinate along
    u, for one model and for a consensus alike (1e-5 relative)."""
    fitted_pbmc = request.getfixturevalue(fixture)
    groups = ["CD19+ B", "CD56+ NK", "Dendritic"]
    for score in ("separation", "position"):
        scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", groups=groups, reference=reference, score=score)
        for g in groups:
            mu_g, mu_r = _centroids(fitted_pbmc, "bulk_labels", g, reference)
            u = (mu_g - mu_r) / np.linalg.norm(mu_g - mu_r)
            total = fitted_pbmc.uns[KEY]["scores"][g].astype(np.float64).sum()
            expected = np.linalg.norm(mu_g - mu_r) if score == "separation" else mu_g @ u
            assert abs(total - expected) < 1e-5 * max(1.0, abs(expected)), (score, g)
        np.testing.assert_allclose(
            fitted_pbmc.uns[KEY]["centroid_distance"][groups[0]][0],
            np.linalg.norm(np.subtract(*_centroids(fitted_pbmc, "bulk_labels", groups[0], reference))), rtol=1e-4)


def test_genes_a_group_lacks_come_last(fitted_pbmc):
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels")
    res = fitted_pbmc.uns[KEY]
    for g in res["names"].dtype.names:
        lower = np.asarray(res["lower_in_group"][g])
        assert not np.any(lower[:-1] & ~lower[1:]), g  # once True, always True
        lfc = np.asarray(res["logfoldchanges"][g])
        assert np.all(lfc[~lower] >= -1e-5)


def test_scanpy_readers_and_plots_work(fitted_pbmc, tmp_path):
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels")
    df = sc.get.rank_genes_groups_df(fitted_pbmc, group=None, key=KEY)
    assert len(df) == fitted_pbmc.raw.n_vars * fitted_pbmc.obs["bulk_labels"].nunique()  # all genes stored
    assert set(df.columns) >= {"group", "names", "scores", "logfoldchanges", "pvals", "pvals_adj"}
    assert df[["scores", "logfoldchanges", "pvals", "pvals_adj"]].notna().all().all()
    assert ((df.pvals >= 0) & (df.pvals <= 1) & (df.pvals_adj >= df.pvals - 1e-12)).all()
    kw = dict(key=KEY, n_genes=3, show=False)
    sc.pl.rank_genes_groups(fitted_pbmc, **kw)
    sc.pl.rank_genes_groups_dotplot(fitted_pbmc, **kw)
    sc.pl.rank_genes_groups_matrixplot(fitted_pbmc, **kw)
    sc.pl.rank_genes_groups_heatmap(fitted_pbmc, **kw)
    sc.pl.rank_genes_groups_stacked_violin(fitted_pbmc, **kw)
    sc.tl.filter_rank_genes_groups(fitted_pbmc, key=KEY, key_added="filtered")
    assert "names" in fitted_pbmc.uns["filtered"]
    del fitted_pbmc.uns["filtered"]  # scanpy writes NaN into filtered names: not h5ad-writable
    fitted_pbmc.write_h5ad(tmp_path / "r.h5ad")
    back = sc.read_h5ad(tmp_path / "r.h5ad")
    pd.testing.assert_frame_equal(sc.get.rank_genes_groups_df(back, group=None, key=KEY), df)


def test_jacobians_are_read_from_complete_layers_and_recomputed_otherwise(fitted_pbmc):
    J = scelm.get.jacobian(fitted_pbmc)
    fitted_pbmc.layers["elm_jacobian_0"] = fitted_pbmc.layers["elm_jacobian_0"] * 2  # marks where values come from
    np.testing.assert_allclose(scelm.get.jacobian(fitted_pbmc)[:, 0], 2 * J[:, 0])  # read from the layers
    fitted_pbmc.layers["elm_jacobian_0"] = fitted_pbmc.layers["elm_jacobian_0"].astype(np.float16)
    np.testing.assert_array_equal(scelm.get.jacobian(fitted_pbmc), J)  # float16 layers: recomputed exactly
    del fitted_pbmc.layers["elm_jacobian_0"]
    np.testing.assert_array_equal(scelm.get.jacobian(fitted_pbmc), J)  # incomplete layers: recomputed


def test_ranking_does_not_depend_on_the_block_size(fitted_pbmc):
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", key_added="big")
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", chunk_size=97, key_added="small")
    for field in ("scores", "pvals"):
        a, b = fitted_pbmc.uns["big"][field], fitted_pbmc.uns["small"][field]
        for g in a.dtype.names:
            np.testing.assert_allclose(np.sort(a[g]), np.sort(b[g]), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_known_markers_recovered_on_simulated_data():
    adata, markers = scelm.datasets.simulate_markers(1200, 400, n_types=4, effect=1.5, n_programs=2, random_state=0)
    scelm.tl.parametric_umap(adata, random_state=0)
    scelm.tl.rank_genes_elm(adata, "cell_type")
    res = adata.uns[KEY]["names"]
    precision = np.mean([np.isin(res[g][:10], markers[g]).mean() for g in markers])
    assert precision >= 0.5, precision


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_textbook_markers_on_pbmc(pbmc, seed):
    """Defaults. Bounds at twice the worst rank seen over seeds 0-4 or more (NKG7 <= 1,
    GNLY 0, CD79A 0, CD79B <= 3, CST3 <= 4, FCER1A <= 10), so CPU rounding cannot flip them."""
    scelm.tl.parametric_umap(pbmc, random_state=seed, store_jacobian=False)
    scelm.tl.rank_genes_elm(pbmc, "bulk_labels")
    names = pbmc.uns[KEY]["names"]

    def rank(g, gene):
        return int(np.flatnonzero(names[g] == gene)[0])

    assert rank("CD56+ NK", "NKG7") < 5 and rank("CD56+ NK", "GNLY") < 5
    assert rank("CD19+ B", "CD79A") < 3 and rank("CD19+ B", "CD79B") < 15
    assert rank("Dendritic", "CST3") < 10 and rank("Dendritic", "FCER1A") < 20
    # Monocyte markers are not asserted: this dataset's large 'Dendritic' group expresses
    # LYZ/S100A8 too, so they separate monocytes from the rest less than other genes do.


def test_consensus_scores_equal_brute_force_on_its_contributions(ensemble_pbmc):
    """The streamed moments give what one gets from get.contributions (the consensus's)
    by hand; the standard error is that of the mean over members."""
    adata = ensemble_pbmc
    scelm.tl.rank_genes_elm(adata, "bulk_labels", groups=["CD19+ B", "CD56+ NK"])
    res = adata.uns[KEY]
    model_genes = list(adata.uns["elm"]["var_names"])
    C = scelm.get.contributions(adata, genes=model_genes).astype(np.float64)
    for g in ("CD19+ B", "CD56+ NK"):
        mu_g, mu_r = _centroids(adata, "bulk_labels", g)
        u = (mu_g - mu_r) / np.linalg.norm(mu_g - mu_r)
        inside = (adata.obs["bulk_labels"] == g).to_numpy()
        expected = pd.Series((C[inside].mean(0) - C[~inside].mean(0)).T @ u, index=model_genes)
        got = pd.Series(res["scores"][g], index=res["names"][g])
        np.testing.assert_allclose(got.loc[model_genes], expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert res["params"]["n_models"] == 3


def test_expression_score_is_the_expression_part_of_the_separation(ensemble_pbmc):
    """expression = ((mean J_group + mean J_ref) / 2 * (mean x_group - mean x_ref)) . u, by hand
    from get.jacobian and the expression the model reads."""
    adata = ensemble_pbmc
    scelm.tl.rank_genes_elm(adata, "bulk_labels", groups=["CD19+ B", "CD56+ NK"], score="expression", key_added="expr")
    res = adata.uns["expr"]
    model_genes = list(adata.uns["elm"]["var_names"])
    J = scelm.get.jacobian(adata, genes=model_genes).astype(np.float64)
    X = np.asarray(adata.raw[:, model_genes].X.toarray(), dtype=np.float64)
    for g in ("CD19+ B", "CD56+ NK"):
        mu_g, mu_r = _centroids(adata, "bulk_labels", g)
        u = (mu_g - mu_r) / np.linalg.norm(mu_g - mu_r)
        inside = (adata.obs["bulk_labels"] == g).to_numpy()
        mid = (J[inside].mean(0) + J[~inside].mean(0)) / 2
        expected = pd.Series(((mid * (X[inside].mean(0) - X[~inside].mean(0))).T @ u), index=model_genes)
        got = pd.Series(res["scores"][g], index=res["names"][g])
        np.testing.assert_allclose(got.loc[model_genes], expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert np.isnan(res["pvals"]["CD19+ B"]).all()


def test_ensemble_round_trips_and_transform_reproduces_the_map(ensemble_pbmc, tmp_path):
    adata = ensemble_pbmc
    entry = adata.uns["elm"]
    assert entry["version"] == 3 and set(entry["encoders"]) == {"0", "1", "2"} and entry["alignment"].shape == (3, 2, 2)
    assert [k for k in adata.layers if k.startswith("elm_")] == ["elm_jacobian_0", "elm_jacobian_1"]
    scelm.tl.rank_genes_elm(adata, "bulk_labels")
    adata.write_h5ad(tmp_path / "e.h5ad")
    back = sc.read_h5ad(tmp_path / "e.h5ad")
    scelm.tl.rank_genes_elm(back, "bulk_labels", key_added="again")
    for g in back.uns[KEY]["names"].dtype.names:
        np.testing.assert_array_equal(back.uns["again"]["names"][g], back.uns[KEY]["names"][g])
    query = back.copy()
    del query.uns["elm"], query.obsm["X_elm"]
    scelm.tl.transform(query, back, store_jacobian=False)
    np.testing.assert_allclose(query.obsm["X_elm"], adata.obsm["X_elm"], rtol=1e-5, atol=1e-5)


def test_group_edge_cases(fitted_pbmc):
    obs = fitted_pbmc.obs
    labels = obs["bulk_labels"].astype(str).to_numpy().astype(object)
    labels[:5] = np.nan
    labels[5] = "singleton"
    obs["lab"] = pd.Categorical(labels, categories=[*obs["bulk_labels"].cat.categories, "singleton", "unused"])
    scelm.tl.rank_genes_elm(fitted_pbmc, "lab")
    res = fitted_pbmc.uns[KEY]
    assert "unused" not in res["names"].dtype.names
    assert np.all(np.asarray(res["pvals"]["singleton"]) == 1.0)
    for field in ("scores", "pvals", "pvals_adj", "logfoldchanges"):
        for g in res[field].dtype.names:
            assert np.all(np.isfinite(res[field][g])), (field, g)
    obs["numeric"] = obs["phase"].cat.codes.astype(int)
    scelm.tl.rank_genes_elm(fitted_pbmc, "numeric", groups=["0"], reference="1")
    assert fitted_pbmc.uns[KEY]["names"].dtype.names == ("0",)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(groupby="nope"), KeyError, "groupby='nope'"),
        (dict(groupby="bulk_labels", reference="B cells"), ValueError, "reference='B cells'"),
        (dict(groupby="bulk_labels", groups=["nope"]), ValueError, "nope"),
        (dict(groupby="bulk_labels", score="best"), ValueError, "score"),
        (dict(groupby="bulk_labels", elm_key="other"), KeyError, "other"),
    ],
)
def test_bad_arguments(fitted_pbmc, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        scelm.tl.rank_genes_elm(fitted_pbmc, **kwargs)
    assert KEY not in fitted_pbmc.uns


def test_fold_changes_follow_scanpy(fitted_pbmc):
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", groups=["CD19+ B"], key_added="e")
    fitted_pbmc.uns["log1p"] = {"base": 2}
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", groups=["CD19+ B"], key_added="two")
    sc.tl.rank_genes_groups(fitted_pbmc, "bulk_labels", groups=["CD19+ B"], method="t-test", key_added="tt")
    elm = sc.get.rank_genes_groups_df(fitted_pbmc, "CD19+ B", key="two").set_index("names")
    tt = sc.get.rank_genes_groups_df(fitted_pbmc, "CD19+ B", key="tt").set_index("names")
    np.testing.assert_allclose(elm["logfoldchanges"], tt.loc[elm.index, "logfoldchanges"], rtol=1e-4, atol=1e-4)
    natural = sc.get.rank_genes_groups_df(fitted_pbmc, "CD19+ B", key="e").set_index("names")
    assert not np.allclose(natural["logfoldchanges"], elm.loc[natural.index, "logfoldchanges"])


@pytest.mark.parametrize("corr_method", ["benjamini-hochberg", "bonferroni"])
def test_adjusted_pvalues_are_corrected_over_the_tested_genes_like_scanpy(fitted_pbmc, corr_method):
    """scanpy corrects over the genes it tests (mask_var); scelm tests the genes its model
    reads, and the others keep p = 1. Both side by side, on the same gene mask."""
    from scipy.stats import false_discovery_control

    def adjusted(p):
        return false_discovery_control(p) if corr_method == "benjamini-hochberg" else np.minimum(p * len(p), 1.0)

    model_genes = pd.Index(fitted_pbmc.uns["elm"]["var_names"])
    assert len(model_genes) < fitted_pbmc.raw.n_vars  # the model reads a subset: the correction differs
    mask = fitted_pbmc.raw.var_names.isin(model_genes)
    sc.tl.rank_genes_groups(fitted_pbmc, "bulk_labels", groups=["CD19+ B"], method="t-test", mask_var=mask,
                            corr_method=corr_method, key_added="tt")
    tt = sc.get.rank_genes_groups_df(fitted_pbmc, "CD19+ B", key="tt")
    assert len(tt) == mask.sum()
    np.testing.assert_allclose(tt["pvals_adj"], adjusted(tt["pvals"].to_numpy()), rtol=1e-10)
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", groups=["CD19+ B"], corr_method=corr_method)
    elm = sc.get.rank_genes_groups_df(fitted_pbmc, "CD19+ B", key=KEY).set_index("names")
    tested = elm.loc[model_genes]
    np.testing.assert_allclose(tested["pvals_adj"], adjusted(tested["pvals"].to_numpy()), rtol=1e-10)
    untested = elm.drop(model_genes)
    assert (untested["pvals"] == 1).all() and (untested["pvals_adj"] == 1).all()


def _v01_entry(entry: dict) -> dict:
    """The same ensemble in the uns layout scelm 0.1.0 wrote: one full entry per member."""
    params = dict(entry["params"])

    def member(i):
        return {
            "params": params, "a": params["a"], "b": params["b"], "loss_history": entry["loss_history"][i],
            "var_names": entry["var_names"], "front_end": entry["front_end"], "encoder": entry["encoders"][str(i)],
        }

    return dict(member(0), members={str(i): member(i) for i in range(1, len(entry["encoders"]))})


def _member_map(adata, entry, member: int) -> np.ndarray:
    """One member's own map (no alignment), computed from its weights."""
    import torch

    from scelm._core.encoder import StackedEncoder
    from scelm._model import StoredModel

    stored = StoredModel.from_adata(adata, "elm")
    z = stored.model.front_end.project(stored.input_matrix(adata))
    enc = StackedEncoder.from_states([{k: np.asarray(v) for k, v in entry["encoders"][str(member)].items()}], "relu")
    with torch.no_grad():
        return enc(torch.as_tensor(z))[0].numpy()


@pytest.mark.parametrize("layout", ["0.1.0", "format 2"])
def test_older_files_load_as_their_model_0(ensemble_pbmc, tmp_path, layout):
    """Files written before the consensus show model 0's map: they load as model 0 alone,
    so every explanation stays exact for the map they show."""
    entry = ensemble_pbmc.uns["elm"]
    old = _v01_entry(entry) if layout == "0.1.0" else {
        **{k: v for k, v in entry.items() if k != "alignment"}, "version": 2}
    ensemble_pbmc.uns["old"] = old
    ensemble_pbmc.obsm["X_old"] = _member_map(ensemble_pbmc, entry, 0)
    ensemble_pbmc.write_h5ad(tmp_path / "old.h5ad")
    back = sc.read_h5ad(tmp_path / "old.h5ad")
    C = scelm.get.contributions(back, elm_key="old")
    np.testing.assert_allclose(C.sum(-1), back.obsm["X_old"], rtol=1e-4, atol=1e-5)
    scelm.tl.rank_genes_elm(back, "bulk_labels", elm_key="old", key_added="from_old", groups=["CD19+ B"])
    assert back.uns["from_old"]["params"]["n_models"] == 1
    mu_g, mu_r = (back.obsm["X_old"][m].mean(0) for m in ((back.obs["bulk_labels"] == "CD19+ B").to_numpy(),
                                                           (back.obs["bulk_labels"] != "CD19+ B").to_numpy()))
    np.testing.assert_allclose(back.uns["from_old"]["scores"]["CD19+ B"].astype(np.float64).sum(), np.linalg.norm(mu_g - mu_r),
                               rtol=1e-4)
    query = back.copy()
    scelm.tl.transform(query, back, elm_key="old", key_added="q", store_jacobian=False)
    np.testing.assert_allclose(query.obsm["X_q"], back.obsm["X_old"], rtol=1e-5, atol=1e-5)
    assert query.uns["q"]["version"] == 3 and set(query.uns["q"]["encoders"]) == {"0"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_group_sums_equal_per_cell_contributions(seed, monkeypatch):
    """GroupMoments maps the members' input-space Jacobians to genes after summing over a
    group's cells (a few rows at a time here); the sums equal those of every cell's
    gene-space contributions."""
    import torch

    from scelm._core import ranking
    from scelm._core.ranking import GroupMoments

    monkeypatch.setattr(ranking, "ROWS_F64", 4)

    g = torch.Generator().manual_seed(seed)
    b, m, d, p, k, n_groups = 37, 3, 2, 5, 11, 4
    centred = torch.randn(b, k, generator=g)
    jz, y = torch.randn(b, m, d, p, generator=g), torch.randn(b, m, d, generator=g)
    W = torch.randn(k, p, generator=g)
    code = torch.randint(-1, n_groups, (b,), generator=g)
    acc = GroupMoments(n_groups, m, d, k, device=torch.device("cpu"))
    acc.update(code, centred, jz, y, W)
    J = jz.double() @ W.double().T  # (b, M, d, genes) gene space
    c = J * centred.double()[:, None, None, :]
    cbar = c.mean(1)
    for group in range(n_groups):
        rows = code == group
        assert acc.n[group] == rows.sum()
        assert rel_err(acc.s1[group], c[rows].sum(0).flatten(0, 1)) < 1e-6
        assert rel_err(acc.sj[group], J[rows].sum(0).flatten(0, 1)) < 1e-6
        assert rel_err(acc.sy[group], y[rows].double().sum(0).flatten()) < 1e-6
        assert rel_err(acc.sx[group], centred[rows].double().sum(0)) < 1e-6
        assert rel_err(acc.s2[group], torch.einsum("bik,bjk->ijk", cbar[rows], cbar[rows])) < 1e-6


@pytest.mark.parametrize("score", ["separation", "position"])
def test_pvalues_are_the_t_test_of_the_ranked_score(ensemble_pbmc, score):
    """separation: Welch's t-test of the per-cell c_i . u, group against rest; position: the
    one-sample t-test of c_i . u in the group; both against scipy on brute-force c_i . u."""
    from scipy import stats

    adata = ensemble_pbmc
    scelm.tl.rank_genes_elm(adata, "bulk_labels", groups=["CD19+ B"], score=score)
    res = adata.uns[KEY]
    genes = list(adata.uns["elm"]["var_names"])[:40]
    C = scelm.get.contributions(adata, genes=genes).astype(np.float64)
    mu_g, mu_r = _centroids(adata, "bulk_labels", "CD19+ B")
    u = (mu_g - mu_r) / np.linalg.norm(mu_g - mu_r)
    proj = np.einsum("ndk,d->nk", C, u)
    inside = (adata.obs["bulk_labels"] == "CD19+ B").to_numpy()
    if score == "separation":
        expected = stats.ttest_ind(proj[inside], proj[~inside], equal_var=False).pvalue
    else:
        expected = stats.ttest_1samp(proj[inside], 0.0).pvalue
    got = pd.Series(res["pvals"]["CD19+ B"], index=res["names"]["CD19+ B"]).loc[genes].to_numpy()
    defined = np.isfinite(expected)  # scipy's NaN where c_i . u is constant (a gene unexpressed in the group): p = 1 here
    np.testing.assert_allclose(got[defined], expected[defined], rtol=1e-3, atol=1e-300)
    assert defined.sum() > 20 and np.all(got[~defined] == 1.0)
    assert res["params"]["pvals"].startswith("Welch" if score == "separation" else "one-sample")


@pytest.mark.parametrize("score", ["magnitude", "weight", "expression"])
def test_untested_scores_have_no_pvalues(fitted_pbmc, score):
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", groups=["CD19+ B"], score=score)
    res = fitted_pbmc.uns[KEY]
    assert np.all(np.isnan(res["pvals"]["CD19+ B"])) and np.all(np.isnan(res["pvals_adj"]["CD19+ B"]))
    assert res["params"]["pvals"].startswith("no test")
    df = sc.get.rank_genes_groups_df(fitted_pbmc, "CD19+ B", key=KEY)  # scanpy still reads it
    assert len(df) == fitted_pbmc.raw.n_vars


@pytest.mark.parametrize("score", ["separation", "position", "magnitude", "weight", "expression"])
def test_member_parts_average_to_the_consensus_score(score):
    """scores_se is the standard error of the members' parts, whose mean is the consensus
    score for every score (for magnitude: each member's mean contribution projected on the
    consensus's, the delta method)."""
    import torch

    from scelm._core.ranking import MemberMeans, uniform

    gen = torch.Generator().manual_seed(0)
    f = [torch.randn(5, 2, 30, dtype=torch.float64, generator=gen) for _ in range(4)]
    means = MemberMeans(delta_y=torch.randn(5, 2, dtype=torch.float64, generator=gen) + 3, delta_c=f[0], mean_c=f[1], mean_j=f[2],
                        delta_e=f[3])
    consensus = means.scores(score, uniform(5, means.delta_y))
    assert rel_err(means.member_parts(score).mean(0), consensus) < 1e-12
