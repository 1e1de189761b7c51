-- One RAW table per MovieLens file (columns and types as in netflix_elt/contracts.py), append-only:
-- every row carries its lineage: the staged file it came from, its row number in that file, the load that
-- wrote it and when. Daily files append to the same table; dbt staging resolves the latest version.

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.MOVIES (
    MOVIE_ID NUMBER(38,0) NOT NULL COMMENT 'movieId: MovieLens movie id',
    TITLE VARCHAR NOT NULL COMMENT 'title: Title with the release year in "(YYYY)", if known',
    GENRES VARCHAR NOT NULL COMMENT 'genres: Pipe-separated genres, or "(no genres listed)"',
    SOURCE_FILE VARCHAR NOT NULL COMMENT 'stage key of the file the row came from',
    SOURCE_ROW_NUMBER NUMBER(38,0) NOT NULL COMMENT '1-based data row number in that file',
    LOAD_ID VARCHAR NOT NULL COMMENT 'LOAD_RAW_FILES run that loaded the row',
    LOADED_AT TIMESTAMP_NTZ NOT NULL COMMENT 'UTC time the row was loaded'
) COMMENT = 'movies.csv: One row per movie. Daily files correct titles and genres or add movies. Natural key: movieId.';

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.RATINGS (
    USER_ID NUMBER(38,0) NOT NULL COMMENT 'userId: Anonymised user id',
    MOVIE_ID NUMBER(38,0) NOT NULL COMMENT 'movieId: Rated movie',
    RATING NUMBER(2,1) NOT NULL COMMENT 'rating: 0.5 to 5.0 in half-star steps',
    EPOCH_SECONDS NUMBER(38,0) NOT NULL COMMENT 'timestamp: Seconds since 1970-01-01 UTC',
    SOURCE_FILE VARCHAR NOT NULL COMMENT 'stage key of the file the row came from',
    SOURCE_ROW_NUMBER NUMBER(38,0) NOT NULL COMMENT '1-based data row number in that file',
    LOAD_ID VARCHAR NOT NULL COMMENT 'LOAD_RAW_FILES run that loaded the row',
    LOADED_AT TIMESTAMP_NTZ NOT NULL COMMENT 'UTC time the row was loaded'
) COMMENT = 'ratings.csv: One row per rating event. Natural key: userId, movieId, timestamp.';

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.TAGS (
    USER_ID NUMBER(38,0) NOT NULL COMMENT 'userId: Anonymised user id',
    MOVIE_ID NUMBER(38,0) NOT NULL COMMENT 'movieId: Tagged movie',
    TAG VARCHAR NOT NULL COMMENT 'tag: Free-text tag',
    EPOCH_SECONDS NUMBER(38,0) NOT NULL COMMENT 'timestamp: Seconds since 1970-01-01 UTC',
    SOURCE_FILE VARCHAR NOT NULL COMMENT 'stage key of the file the row came from',
    SOURCE_ROW_NUMBER NUMBER(38,0) NOT NULL COMMENT '1-based data row number in that file',
    LOAD_ID VARCHAR NOT NULL COMMENT 'LOAD_RAW_FILES run that loaded the row',
    LOADED_AT TIMESTAMP_NTZ NOT NULL COMMENT 'UTC time the row was loaded'
) COMMENT = 'tags.csv: One row per tag a user applied to a movie. Natural key: userId, movieId, tag, timestamp.';

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.LINKS (
    MOVIE_ID NUMBER(38,0) NOT NULL COMMENT 'movieId: MovieLens movie id',
    IMDB_ID VARCHAR NOT NULL COMMENT 'imdbId: IMDb id digits, zero-padded to 7 (no ''tt'')',
    TMDB_ID NUMBER(38,0) COMMENT 'tmdbId: TMDB id; empty when unknown',
    SOURCE_FILE VARCHAR NOT NULL COMMENT 'stage key of the file the row came from',
    SOURCE_ROW_NUMBER NUMBER(38,0) NOT NULL COMMENT '1-based data row number in that file',
    LOAD_ID VARCHAR NOT NULL COMMENT 'LOAD_RAW_FILES run that loaded the row',
    LOADED_AT TIMESTAMP_NTZ NOT NULL COMMENT 'UTC time the row was loaded'
) COMMENT = 'links.csv: External ids of each movie. Natural key: movieId.';

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.GENOME_SCORES (
    MOVIE_ID NUMBER(38,0) NOT NULL COMMENT 'movieId: Scored movie',
    TAG_ID NUMBER(38,0) NOT NULL COMMENT 'tagId: Genome tag',
    RELEVANCE FLOAT NOT NULL COMMENT 'relevance: Relevance of the tag to the movie, 0 to 1',
    SOURCE_FILE VARCHAR NOT NULL COMMENT 'stage key of the file the row came from',
    SOURCE_ROW_NUMBER NUMBER(38,0) NOT NULL COMMENT '1-based data row number in that file',
    LOAD_ID VARCHAR NOT NULL COMMENT 'LOAD_RAW_FILES run that loaded the row',
    LOADED_AT TIMESTAMP_NTZ NOT NULL COMMENT 'UTC time the row was loaded'
) COMMENT = 'genome-scores.csv: Tag genome: relevance of each of the 1,128 genome tags to each movie that has a genome. Natural key: movieId, tagId.';

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.GENOME_TAGS (
    TAG_ID NUMBER(38,0) NOT NULL COMMENT 'tagId: Genome tag id',
    TAG VARCHAR NOT NULL COMMENT 'tag: Genome tag text',
    SOURCE_FILE VARCHAR NOT NULL COMMENT 'stage key of the file the row came from',
    SOURCE_ROW_NUMBER NUMBER(38,0) NOT NULL COMMENT '1-based data row number in that file',
    LOAD_ID VARCHAR NOT NULL COMMENT 'LOAD_RAW_FILES run that loaded the row',
    LOADED_AT TIMESTAMP_NTZ NOT NULL COMMENT 'UTC time the row was loaded'
) COMMENT = 'genome-tags.csv: The 1,128 tags of the tag genome. Natural key: tagId.';
