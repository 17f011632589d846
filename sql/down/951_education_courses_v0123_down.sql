-- Roll back 951: drop the course tables.
-- Courses are creators' content and enrollments are paid access; lessons and enrollments cannot
-- exist without a course, so refuse while any course exists.
-- vezamig:lock courses
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM courses)
DROP TABLE IF EXISTS course_enrollments;
DROP TABLE IF EXISTS course_lessons;
DROP TABLE IF EXISTS courses;
