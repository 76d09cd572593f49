// `npm run bench -- <name>`: runs bench/<name>.ts, whose run() prints human-readable lines and returns its
// figures; the figures are printed last, as one JSON object on one line.
const name = process.argv[2];
if (!name || !/^[a-z0-9-]+$/.test(name)) {
  console.error('usage: npm run bench -- <name>   (bus | cluster | learn | operator | soak | weights)');
  process.exit(2);
}
const module = (await import(`./${name}.ts`).catch((err: unknown) => {
  console.error(`no benchmark named ${name}: ${String(err)}`);
  process.exit(2);
})) as { run(): Promise<Record<string, number | string | boolean>> };
const figures = await module.run();
console.log(JSON.stringify({ bench: name, ...figures }));
process.exit(0);
