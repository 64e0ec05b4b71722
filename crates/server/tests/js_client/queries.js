// Query cases: every filter function, operator and literal kind the official client's query
// builder produces (azure-query-js: JavaScript predicates, template objects, `?`-parameter
// strings, raw OData strings), paging with $skip/$top/includeTotalCount, $select and
// ordering. The data is the official client's own e2e query test data (248 movies, shipped
// in the npm package) plus two rows with characters URLs must escape and times of day; each
// case's correct answer is the data filtered, ordered and paged in JavaScript, as the
// official e2e query tests check it.
'use strict';

const fs = require('fs');
const vm = require('vm');
const { norm, attempt, differs, brief, first, expectStatus } = require('./normalize');

const TABLE = 'Movie';
const PAGE_SIZE = 50; // both servers' default page size

function loadMovies() {
    const file = require.resolve('azure-mobile-apps-client/e2etest/tests/shared/queryTestData.js');
    const sandbox = { zumo: { tests: {} }, Date };
    vm.runInNewContext(fs.readFileSync(file, 'utf8'), sandbox);
    const movies = sandbox.zumo.tests.getQueryTestData();
    movies.push({
        title: 'Fast & Furious + 100% #1? a=b/c',
        year: 2009,
        duration: 107,
        mpaaRating: 'PG-13',
        releaseDate: new Date(Date.UTC(2009, 3, 3, 14, 30, 15, 250)),
        bestPictureWinner: false,
    });
    movies.push({
        title: 'Late Show; "quoted" \\ back',
        year: 2010,
        duration: 95,
        mpaaRating: 'R',
        releaseDate: new Date(Date.UTC(2010, 0, 31, 23, 59, 59, 999)),
        bestPictureWinner: false,
    });
    // Array.from and Object.assign copy the rows out of the vm's realm (its Array and Object
    // prototypes would make deep comparisons fail).
    return Array.from(movies, (movie, index) => Object.assign({ id: 'Movie ' + String(index).padStart(3, '0') }, movie));
}

const MOVIES = loadMovies();
const FIELDS = ['title', 'year', 'duration', 'mpaaRating', 'releaseDate', 'bestPictureWinner'];
const BY_ID = new Map(MOVIES.map((movie) => [movie.id, movie]));

async function setup(context) {
    const table = context.client.getTable(TABLE);
    for (const movie of MOVIES) {
        await table.insert(Object.assign({}, movie));
    }
}

/**
 * A query case. `build(table)` makes the client query; `options` say what the correct answer
 * is: `where` (the predicate in JavaScript), `order` ([field, ascending] pairs), `skip`,
 * `top` (0 and none mean one page, as both servers read `$top=0`), `total`
 * (includeTotalCount), `select` (fields), `nextLink` (the answer has a Link header to the
 * next page).
 */
function query(name, build, options = {}) {
    const expected = expectedAnswer(name, options);
    return {
        name: 'query/' + name,
        run: (context) => attempt(() => {
            const built = build(context.client.getTable(TABLE));
            return typeof built.read === 'function' ? built.read() : built;
        }, readResult),
        check: (answer) => checkRead(answer, expected, options),
    };
}

/** A raw OData query string, read with `table.read(string)`. */
function raw(name, text, options) {
    return query(name, (table) => table.read(text), options);
}

function readResult(values) {
    const result = { items: norm(Array.from(values)) };
    if (values.totalCount !== undefined) {
        result.totalCount = values.totalCount;
    }
    if (values.nextLink !== undefined) {
        result.hasNextLink = true;
    }
    return result;
}

function expectedAnswer(name, options) {
    let rows = MOVIES.filter(options.where || (() => true));
    const total = rows.length;
    const top = options.top ? options.top : PAGE_SIZE;
    if (!options.order && (options.skip || top < total)) {
        throw new Error('case ' + name + ' pages without an order: its answer is not defined');
    }
    rows = rows.slice().sort(options.order ? compareBy(options.order) : compareBy([['id', true]]));
    rows = rows.slice(options.skip || 0).slice(0, top);
    return { ids: rows.map((row) => row.id), total };
}

function compareBy(order) {
    return (a, b) => {
        for (const [field, ascending] of order) {
            const x = sortKey(a[field]);
            const y = sortKey(b[field]);
            if (x < y) {
                return ascending ? -1 : 1;
            }
            if (x > y) {
                return ascending ? 1 : -1;
            }
        }
        return 0;
    };
}

function sortKey(value) {
    return value instanceof Date ? value.getTime() : value;
}

function checkRead(answer, expected, options) {
    if (answer.error) {
        return 'the query failed: ' + brief(answer.error) + ' ' + answer._message;
    }
    const items = answer.result.items;
    let ids = items.map((item) => item.id);
    if (!options.order) {
        ids = ids.slice().sort();
    }
    return first(
        differs(ids, expected.ids, 'ids'),
        options.total ? differs(answer.result.totalCount, expected.total, 'totalCount') : null,
        options.nextLink ? differs(answer.result.hasNextLink, true, 'a next link (Link header)') : null,
        checkValues(items, options.select),
    );
}

/** Every returned item carries its seeded values (only the selected fields under $select). */
function checkValues(items, select) {
    for (const item of items) {
        const seeded = BY_ID.get(item.id);
        if (!seeded) {
            return 'unknown item ' + brief(item);
        }
        for (const field of select || FIELDS) {
            const problem = differs(item[field], norm(seeded[field]), item.id + '.' + field);
            if (problem) {
                return problem;
            }
        }
        for (const field of select ? FIELDS.filter((f) => !select.includes(f)) : []) {
            if (field in item) {
                return item.id + ' has the unselected field ' + field;
            }
        }
    }
    return null;
}

const dateBefore1970 = new Date(Date.UTC(1969, 11, 31, 23, 59, 59));
const date1980 = new Date(Date.UTC(1980, 0, 1));
const dateBefore1990 = new Date(Date.UTC(1989, 11, 31, 23, 59, 59));
const pulpFiction = new Date(Date.UTC(1994, 9, 14));
const byTitle = [['title', true]];

const cases = [
    // Comparison and logical operators, numbers.
    query('gt-lt-and', (t) => t.where(function () { return this.year > 1989 && this.year < 2000; }),
        { where: (m) => m.year > 1989 && m.year < 2000 }),
    query('ge-le', (t) => t.where(function () { return this.year >= 1990 && this.year <= 1999; }),
        { where: (m) => m.year >= 1990 && m.year <= 1999 }),
    query('or-of-ands', (t) => t.where(function () { return (this.year >= 1930 && this.year < 1940) || (this.year >= 1950 && this.year < 1960); }),
        { where: (m) => (m.year >= 1930 && m.year < 1940) || (m.year >= 1950 && m.year < 1960) }),
    query('div-eq-ne-float-literal', (t) => t.where(function () { return ((this.year / 1000.5) == 2.0) && this.mpaaRating != 'R'; }),
        { where: (m) => m.year / 1000.5 === 2 && m.mpaaRating !== 'R' }),
    query('add-sub', (t) => t.where(function () { return ((this.year - 1900) >= 80) && (this.year + 10 < 2000) && (this.duration < 120); }),
        { where: (m) => m.year - 1900 >= 80 && m.year + 10 < 2000 && m.duration < 120 }),
    query('mul-mod', (t) => t.where(function () { return this.duration * 2 >= 360 && this.year % 10 === 4; }),
        { where: (m) => m.duration * 2 >= 360 && m.year % 10 === 4 }),
    query('negate-and-negative-literal', (t) => t.where(function () { return -this.duration < -200; }),
        { where: (m) => -m.duration < -200 }),
    query('not', (t) => t.where(function () { return !(this.year < 2005); }),
        { where: (m) => m.year >= 2005 }),
    query('template-object', (t) => t.where({ year: 2000, mpaaRating: 'R' }),
        { where: (m) => m.year === 2000 && m.mpaaRating === 'R' }),
    query('closure-parameter', (t) => t.where(function (n) { return this.title.length <= n; }, 6),
        { where: (m) => m.title.length <= 6 }),

    // String functions and string literals.
    query('indexof', (t) => t.where(function () { return this.title.indexOf('The') === 0; }).take(100),
        { where: (m) => m.title.indexOf('The') === 0, top: 100 }),
    query('toupper', (t) => t.where(function () { return this.title.toUpperCase() === 'THE GODFATHER'; }),
        { where: (m) => m.title.toUpperCase() === 'THE GODFATHER' }),
    query('tolower', (t) => t.where(function () { return this.title.toLowerCase() === 'pulp fiction'; }),
        { where: (m) => m.title.toLowerCase() === 'pulp fiction' }),
    query('tolower-indexof', (t) => t.where(function () { return this.title.toLowerCase().indexOf('the') === 0; }).take(100),
        { where: (m) => m.title.toLowerCase().indexOf('the') === 0, top: 100 }),
    query('length', (t) => t.where(function () { return this.title.length <= 10; }).take(100),
        { where: (m) => m.title.length <= 10, top: 100 }),
    query('indexof-non-ascii', (t) => t.where(function () { return this.title.indexOf('é') >= 0; }),
        { where: (m) => m.title.indexOf('é') >= 0 }),
    query('replace-trim', (t) => t.where(function () { return this.title.replace('The ', '').trim().indexOf('Godfather') === 0; }),
        { where: (m) => m.title.replace('The ', '').trim().indexOf('Godfather') === 0 }),
    query('substring-length', (t) => t.where(function () { return this.title.substring(this.title.length - 1, 1) === 'r'; }),
        { where: (m) => /r$/.test(m.title) }),
    query('substr', (t) => t.where(function () { return this.title.substr(7, 6) === 'father'; }),
        { where: (m) => m.title.substr(7, 6) === 'father' }),
    query('concat', (t) => t.where(function () { return this.title.concat('!') === 'Amélie!'; }),
        { where: (m) => m.title + '!' === 'Amélie!' }),
    query('string-with-quote', (t) => t.where(function () { return this.title === "Schindler's List"; }),
        { where: (m) => m.title === "Schindler's List" }),
    query('string-with-url-characters', (t) => t.where({ title: 'Fast & Furious + 100% #1? a=b/c' }),
        { where: (m) => m.title === 'Fast & Furious + 100% #1? a=b/c' }),
    query('string-with-double-quote-and-backslash', (t) => t.where({ title: 'Late Show; "quoted" \\ back' }),
        { where: (m) => m.title === 'Late Show; "quoted" \\ back' }),
    query('string-eq-and-number', (t) => t.where(function () { return this.mpaaRating === 'PG-13' && this.year >= 1980; }).take(100),
        { where: (m) => m.mpaaRating === 'PG-13' && m.year >= 1980, top: 100 }),
    query('id-indexof', (t) => t.where(function () { return this.id.indexOf('Movie 12') === 0; }),
        { where: (m) => m.id.indexOf('Movie 12') === 0 }),

    // Nulls.
    query('eq-null', (t) => t.where(function () { return this.mpaaRating === null && this.year >= 1980; }),
        { where: (m) => m.mpaaRating === null && m.year >= 1980 }),
    query('ne-null', (t) => t.where(function () { return this.mpaaRating !== null && this.year < 1970; }),
        { where: (m) => m.mpaaRating !== null && m.year < 1970 }),

    // Math functions.
    query('floor', (t) => t.where(function () { return Math.floor(this.duration / 60.0) >= 3; }),
        { where: (m) => Math.floor(m.duration / 60) >= 3 }),
    query('ceiling', (t) => t.where(function () { return Math.ceil(this.duration / 60.5) == 2; }).orderBy('id').take(200),
        { where: (m) => Math.ceil(m.duration / 60.5) === 2, order: [['id', true]], top: 200 }),
    query('round', (t) => t.where(function () { return Math.round(this.duration / 60.5) == 3; }),
        { where: (m) => Math.round(m.duration / 60.5) === 3 }),

    // Dates: literals (datetime'…' with milliseconds) and functions.
    query('date-gt-lt', (t) => t.where(function (d1, d2) { return this.releaseDate > d1 && this.releaseDate < d2; }, dateBefore1970, date1980),
        { where: (m) => m.releaseDate > dateBefore1970 && m.releaseDate < date1980 }),
    query('date-ge-le', (t) => t.where(function (d1, d2) { return this.releaseDate >= d1 && this.releaseDate <= d2; }, date1980, dateBefore1990),
        { where: (m) => m.releaseDate >= date1980 && m.releaseDate <= dateBefore1990 }),
    query('date-eq-template', (t) => t.where({ releaseDate: pulpFiction }),
        { where: (m) => m.releaseDate.getTime() === pulpFiction.getTime() }),
    query('date-milliseconds', (t) => t.where(function (d) { return this.releaseDate >= d; }, new Date(Date.UTC(2010, 0, 31, 23, 59, 59, 999))),
        { where: (m) => m.releaseDate >= new Date(Date.UTC(2010, 0, 31, 23, 59, 59, 999)) }),
    query('date-time-of-day', (t) => t.where(function (d) { return this.releaseDate > d && this.year === 2009; }, new Date(Date.UTC(2009, 3, 3, 14, 30, 15, 249))),
        { where: (m) => m.releaseDate > new Date(Date.UTC(2009, 3, 3, 14, 30, 15, 249)) && m.year === 2009 }),
    query('month', (t) => t.where(function () { return this.releaseDate.getUTCMonth() == (11 - 1); }),
        { where: (m) => m.releaseDate.getUTCMonth() === 10 }),
    query('day', (t) => t.where(function () { return this.releaseDate.getUTCDate() == 1; }),
        { where: (m) => m.releaseDate.getUTCDate() === 1 }),
    query('year', (t) => t.where(function () { return this.releaseDate.getUTCFullYear() !== this.year; }).take(100),
        { where: (m) => m.releaseDate.getUTCFullYear() !== m.year, top: 100 }),
    query('getyear', (t) => t.where(function () { return this.releaseDate.getYear() === 94; }),
        { where: (m) => m.releaseDate.getUTCFullYear() - 1900 === 94 }),

    // Booleans.
    query('bool-eq-true', (t) => t.where(function () { return this.bestPictureWinner === true && this.year < 1950; }),
        { where: (m) => m.bestPictureWinner === true && m.year < 1950 }),
    query('bool-not-eq-false', (t) => t.where(function () { return !(this.bestPictureWinner === false) && this.year >= 2000; }),
        { where: (m) => m.bestPictureWinner !== false && m.year >= 2000 }),
    query('bool-ne-false', (t) => t.where(function () { return this.bestPictureWinner !== false && this.year >= 2000; }),
        { where: (m) => m.bestPictureWinner !== false && m.year >= 2000 }),

    // `in` becomes an or-chain of eq.
    query('in-strings', (t) => t.where(function (ratings) { return this.year >= 2000 && this.mpaaRating in ratings; }, ['G', 'PG', 'PG-13']),
        { where: (m) => m.year >= 2000 && ['G', 'PG', 'PG-13'].includes(m.mpaaRating) }),
    query('in-numbers', (t) => t.where(function (years) { return this.year in years; }, [1972, 1994, 2003]),
        { where: (m) => [1972, 1994, 2003].includes(m.year) }),
    query('in-empty', (t) => t.where(function (none) { return this.year in none; }, []),
        { where: () => false }),

    // `?`-parameter strings (the client's LiteralExpression): OData functions it passes on.
    query('parameters-startswith', (t) => t.where('startswith(title, ?) and (year ge ?)', 'The', 1990),
        { where: (m) => m.title.startsWith('The') && m.year >= 1990 }),
    query('parameters-endswith', (t) => t.where('endswith(title, ?)', 'Man'),
        { where: (m) => m.title.endsWith('Man') }),
    query('parameters-substringof', (t) => t.where('substringof(?, title)', 'Godfather'),
        { where: (m) => m.title.includes('Godfather') }),
    query('parameters-date-and-bool', (t) => t.where('(releaseDate lt ?) and (bestPictureWinner eq ?)', date1980, true),
        { where: (m) => m.releaseDate < date1980 && m.bestPictureWinner === true }),

    // Paging, counting, ordering, projection.
    query('take-500', (t) => t.take(500), { top: 500 }),
    query('default-page-has-next-link', (t) => t.orderBy('id'), { order: [['id', true]], nextLink: true }),
    {
        // The client keeps the Link header's URL as `nextLink` and reads it as an
        // absolute URL: the second page, in order.
        name: 'query/follow-next-link',
        run: (context) => attempt(async () => {
            const table = context.client.getTable(TABLE);
            const first = await table.orderBy('id').read();
            if (first.nextLink === undefined) {
                return { items: [], noLink: true };
            }
            return readResult(await table.read(first.nextLink));
        }),
        check: (answer) => answer.result && answer.result.noLink
            ? 'the first page had no next link'
            : checkRead(answer, expectedAnswer('follow-next-link', { order: [['id', true]], skip: PAGE_SIZE }), { order: [['id', true]] }),
    },
    query('take-0-is-one-page', (t) => t.orderBy('id').take(0), { order: [['id', true]], nextLink: true }),
    query('total-count-without-paging', (t) => t.where({ mpaaRating: 'PG' }).includeTotalCount(),
        { where: (m) => m.mpaaRating === 'PG', total: true }),
    query('skip-500', (t) => t.orderBy('id').skip(500), { order: [['id', true]], skip: 500 }),
    query('take-10-ordered', (t) => t.orderBy('id').take(10), { order: [['id', true]], top: 10 }),
    query('skip-to-last-10', (t) => t.orderBy('id').skip(MOVIES.length - 10), { order: [['id', true]], skip: MOVIES.length - 10 }),
    query('skip-take-total-ordered', (t) => t.orderBy('title').skip(10).take(10).includeTotalCount(),
        { order: byTitle, skip: 10, top: 10, total: true }),
    query('skip-take-total-filter-desc', (t) => t.where({ bestPictureWinner: true }).orderByDescending('releaseDate').skip(10).take(10).includeTotalCount(),
        { where: (m) => m.bestPictureWinner, order: [['releaseDate', false]], skip: 10, top: 10, total: true }),
    query('order-date-then-string', (t) => t.orderBy('releaseDate').orderBy('title').take(50),
        { order: [['releaseDate', true], ['title', true]], top: 50 }),
    query('order-number-then-string', (t) => t.where(function () { return this.year >= 1970; }).orderBy('duration').orderBy('title').take(30),
        { where: (m) => m.year >= 1970, order: [['duration', true], ['title', true]], top: 30 }),
    query('order-bool-desc', (t) => t.orderByDescending('bestPictureWinner').orderBy('id').take(20),
        { order: [['bestPictureWinner', false], ['id', true]], top: 20 }),
    query('select-one', (t) => t.where(function () { return this.year >= 2000; }).select('id', 'title').take(200),
        { where: (m) => m.year >= 2000, top: 200, select: ['title'] }),
    query('select-several-ordered', (t) => t.where(function () { return this.year >= 1990 && this.year < 2000; })
        .select('id', 'title', 'bestPictureWinner', 'duration').orderBy('releaseDate').orderBy('title').take(200),
    { where: (m) => m.year >= 1990 && m.year < 2000, order: [['releaseDate', true], ['title', true]], top: 200, select: ['title', 'bestPictureWinner', 'duration'] }),
    raw('raw-odata-string', '$filter=((year ge 1980) and (year le 1989))&$top=3&$skip=2&$orderby=title asc',
        { where: (m) => m.year >= 1980 && m.year <= 1989, order: byTitle, top: 3, skip: 2 }),
    {
        name: 'query/top-over-max-is-refused',
        run: (context) => attempt(() => context.client.getTable(TABLE).orderBy('id').take(1001).read()),
        check: (answer) => expectStatus(answer, 400),
    },
    {
        name: 'query/lookup-id-with-space',
        run: (context) => attempt(() => context.client.getTable(TABLE).lookup('Movie 003')),
        check: (answer) => answer.error
            ? 'lookup failed: ' + brief(answer.error)
            : differs(pick(answer.result, ['id'].concat(FIELDS)), pick(norm(BY_ID.get('Movie 003')), ['id'].concat(FIELDS))),
    },
    {
        name: 'query/lookup-missing-is-404',
        run: (context) => attempt(() => context.client.getTable(TABLE).lookup('no such movie')),
        check: (answer) => expectStatus(answer, 404),
    },
    {
        name: 'query/missing-table-is-404',
        run: (context) => attempt(() => context.client.getTable('NoSuchTable').read()),
        check: (answer) => expectStatus(answer, 404),
    },
];

function pick(object, keys) {
    const out = {};
    for (const key of keys) {
        out[key] = object[key];
    }
    return out;
}

module.exports = { setup, cases, pick, MOVIES };
