// Load a tfjs graph model (`<dir>/<name>.json` and its shards) from disk without tfjs-node.
const fs = require('fs');
const tf = require('@tensorflow/tfjs');

async function loadGraphModel(dir, name) {
  const json = JSON.parse(fs.readFileSync(`${dir}/${name}.json`));
  const data = Buffer.concat(json.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(`${dir}/${p}`))));
  return tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.length),
  }));
}

module.exports = { loadGraphModel };
