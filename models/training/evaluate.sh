#!/bin/sh
# Reproduce every figure of models/MODEL_CARD_emotion.md with `edge-fer eval` (the pipeline's own
# preprocessing). Usage, from the repository root with the venv active:
#   models/training/evaluate.sh ../shared/datasets/fer2013 RUN_DIR
# RUN_DIR is the training run folder (its held-out split is used for calibration). The float
# reference (models/edge_fer_emotion_float16.tflite, 5.6 MB, not committed) exists after
# `train_fer.py export --dest models/`; without it that row is skipped with a note.
set -eu
DATA=$1
RUN=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
tar xf "$DATA/public_test.tar" -C "$WORK"
echo "== public test split, FER2013 labels (n = 3589)"
for model in edge_fer_emotion edge_fer_emotion_float mini_xception; do
    if ! edge-fer eval "$WORK/public_test" --model "$model" --json > "$WORK/$model.json" 2> "$WORK/$model.err"; then
        echo "$model: not evaluated: $(tail -n 1 "$WORK/$model.err")"
        continue
    fi
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['model'], 'accuracy', r['accuracy'], 'macro_f1', r['macro_f1'], 'ece', r['ece'], 'ms_per_face', r['ms_per_face']); print('  recall', {k: v['recall'] for k, v in r['per_class'].items()})" "$WORK/$model.json"
done
edge-fer eval "$WORK/public_test" --model edge_fer_emotion --plot models/confusion_edge_fer_emotion.png > /dev/null
echo "== ECE on the public test split before calibration (temperature 1)"
edge-fer eval "$WORK/public_test" --model edge_fer_emotion --temperature 1 --json | python3 -c "import json,sys; print('ece', json.load(sys.stdin)['ece'])"
echo "== calibration on the held-out 10 % of the training split (temperature for the manifest)"
[ -d "$RUN/heldout" ] || python models/training/train_fer.py heldout --data "$DATA" --out "$RUN"
edge-fer eval "$RUN/heldout" --model edge_fer_emotion --fit-temperature
echo "== held-out 10 % of the training split (model selection data; not a test figure)"
edge-fer eval "$RUN/heldout" --model edge_fer_emotion --json | python3 -c "import json,sys; r=json.load(sys.stdin); print('accuracy', r['accuracy'], 'macro_f1', r['macro_f1'])"
