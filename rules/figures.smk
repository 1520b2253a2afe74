# The figures (nextrl.analysis.figures.FIGURES): one rule over the list, each figure drawn from one summary table. No
# model is loaded, so `snakemake figures --forcerun summary` redraws every table and figure in seconds. Each PNG is a
# report item (`snakemake --report results/<experiment>/report.html`) with its caption from workflow/report/figure.rst.
localrules:
    figures,
    figure,


# The figures an experiment draws, with their report category: an imported run has no learning curves or step counts,
# and its α sweep and probe only when it is evaluated.
FIGURE_CATEGORIES = {
    "curves": "1. Learning curves",
    "steps": "2. Steps and cost",
    "energy": "3. The trajectory (paper §2)",
    "linearity": "3. The trajectory (paper §2)",
    "alpha": "4. Jumps",
    "probe": "4. Jumps",
}
if not IMPORTING:
    FIGURE_NAMES = list(FIGURE_CATEGORIES)
elif config["import"]["evaluate"]:
    FIGURE_NAMES = ["energy", "linearity", "alpha", "probe"]
else:
    FIGURE_NAMES = ["energy", "linearity"]


rule figure:
    input:
        SUMMARY,
    output:
        png=report(
            f"{FIGURES_DIR}/{{name}}.png",
            caption="../workflow/report/figure.rst",
            category=lambda w: FIGURE_CATEGORIES[w.name],
        ),
        pdf=f"{FIGURES_DIR}/{{name}}.pdf",
    wildcard_constraints:
        name="|".join(FIGURE_NAMES),
    params:
        **STAGE,
    log:
        f"{RESULTS}/logs/figures/{{name}}.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        call("figure", f"--name {{wildcards.name}} --summary {{input}} --output {FIGURES_DIR}/{{wildcards.name}}", per_run=False)


rule figures:
    input:
        expand(f"{FIGURES_DIR}/{{name}}.{{extension}}", name=FIGURE_NAMES, extension=["png", "pdf"]),
