"""scelm.tl.rank_genes_elm: exact decompositions, scanpy compatibility, ground truth."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import scelm

matplotlib.use("Agg")
KEY = "rank_genes_elm"


def _centroids(adata, groupby, g, reference="rest"):
    Y = adata.obsm["X_elm"].astype(np.float64)
    lab = adata.obs[groupby].astype(str).to_numpy()
    ref = lab != g if reference == "rest" else lab == reference
    return Y[lab == g].mean(0), Y[ref].mean(0)


@pytest.mark.parametrize("reference", ["rest", "CD14+ Monocyte"])
def test_scores_are_exact_decompositions(fitted_pbmc, reference):
    groups = ["CD19+ B", "CD56+ NK", "Dendritic"]
    for score in ("separation", "position"):
        scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", groups=groups, reference=reference, score=score)
        for g in groups:
            mu_g, mu_r = _centroids(fitted_pbmc, "bulk_labels", g, reference)
            u = (mu_g - mu_r) / np.linalg.norm(mu_g - mu_r)
            total = fitted_pbmc.uns[KEY]["scores"][g].astype(np.float64).sum()
            expected = np.linalg.norm(mu_g - mu_r) if score == "separation" else mu_g @ u
            assert abs(total - expected) < 1e-4 * max(1.0, abs(expected)), (score, g)
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


def test_streaming_equals_stored_jacobians(fitted_pbmc):
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", key_added="stored")
    for k in range(2):
        del fitted_pbmc.layers[f"elm_jacobian_{k}"]
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", chunk_size=97, key_added="streamed")
    for field in ("scores", "pvals"):
        a, b = fitted_pbmc.uns["stored"][field], fitted_pbmc.uns["streamed"][field]
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


def test_ensemble_averages_and_reports_spread(sim):
    for s in range(3):
        scelm.tl.parametric_umap(sim, n_epochs=40, hidden=(32, 32), n_models=1, random_state=s, key_added=f"m{s}", store_jacobian=False)
    scelm.tl.rank_genes_elm(sim, "cell_type", elm_key=["m0", "m1", "m2"], score="position")
    res = sim.uns[KEY]
    g = res["names"].dtype.names[0]
    assert np.all(np.asarray(res["scores_se"][g]) >= 0) and np.asarray(res["scores_se"][g]).max() > 0
    singles = []
    for s in range(3):
        scelm.tl.rank_genes_elm(sim, "cell_type", elm_key=f"m{s}", score="position", key_added="one")
        singles.append(pd.Series(sim.uns["one"]["scores"][g], index=sim.uns["one"]["names"][g]))
    mean = pd.concat(singles, axis=1).mean(1)
    ens = pd.Series(res["scores"][g], index=res["names"][g])
    np.testing.assert_allclose(ens.loc[mean.index], mean, rtol=1e-4, atol=1e-6)


def test_n_models_ensemble_round_trips_and_is_used(sim, tmp_path):
    scelm.tl.parametric_umap(sim, n_epochs=40, hidden=(32, 32), n_models=3, random_state=5)
    assert set(sim.uns["elm"]["encoders"]) == {"0", "1", "2"} and sim.uns["elm"]["loss_history"].shape == (3, 40)
    assert [k for k in sim.layers if k.startswith("elm_")] == ["elm_jacobian_0", "elm_jacobian_1"]
    sim.write_h5ad(tmp_path / "e.h5ad")
    back = sc.read_h5ad(tmp_path / "e.h5ad")
    scelm.tl.rank_genes_elm(back, "cell_type")
    assert back.uns[KEY]["params"]["n_models"] == 3
    g = back.uns[KEY]["names"].dtype.names[0]
    assert np.asarray(back.uns[KEY]["scores_se"][g]).max() > 0
    # the members ranked one by one, as models of their own, average to the ensemble's scores
    singles = []
    for i in range(3):
        entry = back.uns["elm"]
        back.uns[f"s{i}"] = dict(entry, encoders={"0": entry["encoders"][str(i)]}, loss_history=entry["loss_history"][i : i + 1])
        scelm.tl.rank_genes_elm(back, "cell_type", elm_key=f"s{i}", key_added="one")
        singles.append(pd.Series(back.uns["one"]["scores"][g], index=back.uns["one"]["names"][g]))
    mean = pd.concat(singles, axis=1).mean(1)
    ens = pd.Series(back.uns[KEY]["scores"][g], index=back.uns[KEY]["names"][g])
    np.testing.assert_allclose(ens.loc[mean.index], mean, rtol=1e-4, atol=1e-6)


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


def test_fold_changes_and_adjusted_pvalues_follow_scanpy(fitted_pbmc):
    from scipy.stats import false_discovery_control

    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", groups=["CD19+ B"], key_added="e")
    fitted_pbmc.uns["log1p"] = {"base": 2}
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", groups=["CD19+ B"], key_added="two")
    sc.tl.rank_genes_groups(fitted_pbmc, "bulk_labels", groups=["CD19+ B"], method="t-test", key_added="tt")
    elm = sc.get.rank_genes_groups_df(fitted_pbmc, "CD19+ B", key="two").set_index("names")
    tt = sc.get.rank_genes_groups_df(fitted_pbmc, "CD19+ B", key="tt").set_index("names")
    np.testing.assert_allclose(elm["logfoldchanges"], tt.loc[elm.index, "logfoldchanges"], rtol=1e-4, atol=1e-4)
    natural = sc.get.rank_genes_groups_df(fitted_pbmc, "CD19+ B", key="e").set_index("names")
    assert not np.allclose(natural["logfoldchanges"], elm.loc[natural.index, "logfoldchanges"])
    np.testing.assert_allclose(elm["pvals_adj"], false_discovery_control(elm["pvals"].to_numpy()), rtol=1e-12)


def _v01_entry(entry: dict) -> dict:
    """The same ensemble in the uns layout scelm 0.1.0 wrote: one full entry per member."""
    params = dict(entry["params"])

    def member(i):
        return {
            "params": params, "a": params["a"], "b": params["b"], "loss_history": entry["loss_history"][i],
            "var_names": entry["var_names"], "front_end": entry["front_end"], "encoder": entry["encoders"][str(i)],
        }

    return dict(member(0), members={str(i): member(i) for i in range(1, len(entry["encoders"]))})


def test_models_written_by_0_1_still_load(sim, tmp_path):
    scelm.tl.parametric_umap(sim, n_epochs=20, hidden=(16,), n_models=3, store_jacobian=False)
    scelm.tl.rank_genes_elm(sim, "cell_type", key_added="new")
    sim.uns["old"] = _v01_entry(sim.uns["elm"])
    sim.obsm["X_old"] = sim.obsm["X_elm"]
    sim.write_h5ad(tmp_path / "v01.h5ad")
    back = sc.read_h5ad(tmp_path / "v01.h5ad")
    scelm.tl.rank_genes_elm(back, "cell_type", elm_key="old", key_added="from_old")
    for g in back.uns["new"]["names"].dtype.names:
        np.testing.assert_array_equal(back.uns["from_old"]["names"][g], back.uns["new"]["names"][g])
        np.testing.assert_allclose(back.uns["from_old"]["scores"][g], back.uns["new"]["scores"][g], rtol=1e-6)
    query = sim.copy()
    scelm.tl.transform(query, back, elm_key="old", key_added="q", store_jacobian=False)
    np.testing.assert_allclose(query.obsm["X_q"], sim.obsm["X_elm"], rtol=1e-5, atol=1e-5)
    assert query.uns["q"]["version"] == 2 and set(query.uns["q"]["encoders"]) == {"0", "1", "2"}
