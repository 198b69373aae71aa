# The stories the tiny recipes train and evaluate on (sourced by build.sh and build_rtt.sh, which
# set ADASR): template wording and broad wording (thousands of names and things, many phrasings);
# a rerun appends only what is missing.
$ADASR synth --mode text --n 40000 --seed 0 --splits train --out data/tiny
$ADASR synth --mode text --n 500 --seed 0 --splits valid,test,ood --out data/tiny
$ADASR synth --mode text --n 40000 --seed 0 --splits train --wording broad --out data/broad
$ADASR synth --mode text --n 500 --seed 0 --splits valid,ood --wording broad --out data/broad
