# rsdino: the whole pipeline. The workflow itself lives in workflow/; see README.md.
include: "workflow/Snakefile"
